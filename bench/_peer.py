"""scicat-ingestor, the peer the backfill and start-up benchmarks measure against, in a cached venv.

It is not on PyPI and needs Python >= 3.12: it is installed once from the tarball in
``../shared/peers/scicat-ingestor`` beside the checkout (or ``$SFI_BENCH_PEER_DIR``) into
``~/.cache/sfi-bench/scicat-ingestor-<commit>`` (never into the repository). ``peer()`` returns the
venv's bin directory, or the reason it cannot be used, so that a benchmark skips that comparison
with a clear message instead of failing.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

#: beside the checkout, as the project lays out ``shared/`` (``<checkout>/../shared/peers/scicat-ingestor``)
_BESIDE_CHECKOUT = Path(__file__).resolve().parent.parent.parent / "shared" / "peers" / "scicat-ingestor"
PEER_DIR = Path(os.environ.get("SFI_BENCH_PEER_DIR", _BESIDE_CHECKOUT))
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sfi-bench"
SCHEMA = "bench-coda.imsc.yml"


def _python312() -> str | None:
    """A real interpreter (pyenv's versions directly: its shims fail when several versions are selected)."""
    candidates = sorted(glob.glob(str(Path.home() / ".pyenv/versions/3.12*/bin/python3")))
    if candidates:
        return candidates[-1]
    for name in ("python3.12", "python3.13"):
        found = shutil.which(name)
        if found and ".pyenv/shims" not in found:
            return found
    return None


def peer() -> tuple[Path | None, str]:
    """(bin directory of the peer's venv, "") or (None, why it is unavailable)."""
    tarballs = sorted(PEER_DIR.glob("scicat-ingestor-*.tar.gz"))
    if not tarballs:
        return None, f"no scicat-ingestor tarball in {PEER_DIR}"
    tarball = tarballs[-1]
    venv = CACHE / tarball.name.removesuffix(".tar.gz")
    binary = venv / "bin" / "scicat_background_ingestor"
    if binary.exists():
        return venv / "bin", ""
    python = _python312()
    if python is None:
        return None, "scicat-ingestor needs Python >= 3.12 and none was found (pyenv install 3.12)"
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"installing scicat-ingestor from {tarball} into {venv} (once; cached) ...", flush=True)
    steps = [[python, "-m", "venv", str(venv)],
             [str(venv / "bin/python"), "-m", "pip", "install", "--quiet", str(tarball)]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, env={**os.environ,
                                                                          "SETUPTOOLS_SCM_PRETEND_VERSION": "0.0.0"})
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            last = (done.stderr.strip().splitlines() or ["?"])[-1]
            return None, f"cannot install scicat-ingestor ({' '.join(step[1:3])}): {last}"
    return venv / "bin", ""


def schema_dir() -> Path | None:
    """The folder holding the peer's metadata schema for the bench files (ESS CODA fields, file + constants)."""
    return PEER_DIR if (PEER_DIR / SCHEMA).exists() else None


if __name__ == "__main__":
    where, why = peer()
    print(where or f"unavailable: {why}")
