"""A cron backfill: 1,000 small files into the SciCat test server, one process vs one process per file.

Target: one ``sfi ingest-file DIR`` process >= 10x faster than running ``sfi ingest-file FILE`` once
per file (the existing ingestor's model: a fresh interpreter, imports and login for every file).
The per-file model is timed on a sample of files and extrapolated to all of them (printed as such).
The server runs in this process on 127.0.0.1 (real HTTP, the real validation rules).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scicat_fw_ingest.testing.scicat_server import ScicatTestServer
from tests.nexus_fixtures import write_ess

FILES = 1000
SAMPLE = 50
TARGET = 10.0
WORKERS = 8
_CONFIG = ('[defaults]\ncontactEmail = "data@facility.example"\nowner = "ingestor"\nownerGroup = "facility"\n'
           'principalInvestigator = "Unknown PI"\n')


def _sfi(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scicat_fw_ingest", "ingest-file", *args], capture_output=True,
                          text=True, env=env, check=False)


def main() -> bool:
    with tempfile.TemporaryDirectory(prefix="sfi-bench-backfill-") as tmp, ScicatTestServer() as server:
        root = Path(tmp)
        batch, single = root / "batch", root / "single"
        batch.mkdir()
        single.mkdir()
        started = time.perf_counter()
        for i in range(FILES):
            write_ess(batch / f"run{i:04d}.nxs", uuid=None, title=f"run {i}", entry_identifier=str(i))
        for i in range(SAMPLE):
            write_ess(single / f"run{i:04d}.nxs", uuid=None, title=f"single {i}", entry_identifier=str(i))
        print(f"generated {FILES + SAMPLE} files in {time.perf_counter() - started:.1f} s")
        config = root / "sfi.toml"
        config.write_text(_CONFIG)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SFI_")},
               "SFI_SCICAT_URL": server.url, "SFI_SCICAT_TOKEN": server.token}

        started = time.perf_counter()
        run = _sfi([str(batch), "-j", str(WORKERS), "--json", "-c", str(config)], env)
        t_batch = time.perf_counter() - started
        created = run.stdout.count('"status": "created"')
        if run.returncode != 0 or created != FILES:
            print(f"batch run failed: exit {run.returncode}, {created} created; {run.stderr[-500:]}")
            return False

        started = time.perf_counter()
        for path in sorted(single.iterdir()):
            one = _sfi([str(path), "--json", "-c", str(config)], env)
            if one.returncode != 0:
                print(f"per-file run failed on {path}: {one.stderr[-300:]}")
                return False
        t_sample = time.perf_counter() - started
        t_per_file = t_sample / SAMPLE * FILES

        started = time.perf_counter()
        again = _sfi([str(batch), "-j", str(WORKERS), "--json", "-c", str(config)], env)
        t_again = time.perf_counter() - started
        exists = again.stdout.count('"status": "exists"')
    ratio = t_per_file / t_batch
    print(f"one process, {FILES} files, -j {WORKERS}: {t_batch:.1f} s ({FILES / t_batch:.0f} files/s)")
    print(f"one process per file: {t_sample:.1f} s for a sample of {SAMPLE} -> {t_per_file:.0f} s "
          f"extrapolated to {FILES} files")
    print(f"re-run of the batch (all exist): {t_again:.1f} s, {exists} reported exists")
    print(f"speed-up: {ratio:.1f}x (target >= {TARGET:.0f}x)")
    return ratio >= TARGET and exists == FILES


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
