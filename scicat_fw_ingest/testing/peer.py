"""scicat-ingestor, the peer the benchmarks and the parity test measure against, in a cached venv.

It is not on PyPI and needs Python >= 3.12: it is installed once from the tarball in
``../shared/peers/scicat-ingestor`` beside the checkout (or ``$SFI_BENCH_PEER_DIR``) into
``~/.cache/sfi-bench/scicat-ingestor-<commit>`` (never into the repository). ``peer()`` returns the
venv's bin directory, or the reason it cannot be used, so that a benchmark skips that comparison
with a clear message instead of failing.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

#: beside the checkout, as the project lays out ``shared/`` (``<checkout>/../shared/peers/scicat-ingestor``)
_BESIDE_CHECKOUT = Path(__file__).resolve().parents[3] / "shared" / "peers" / "scicat-ingestor"
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


#: Run with the peer's interpreter: scicat-ingestor's own dataset building (its offline ingestor's steps
#: up to the dataset dict it would POST), for one file and one schema; prints the dataset as JSON.
_DATASET_SCRIPT = r"""
import json, logging, pathlib, sys
import h5py
from scicat_configuration import OfflineIngestorConfig, build_dataclass
from scicat_dataset import (create_data_file_list, create_scicat_dataset_instance, extract_variables_values,
                            scicat_dataset_to_dict)
from scicat_metadata import MetadataSchema

args = json.loads(sys.argv[1])
nexus = pathlib.Path(args["file"])
config = build_dataclass(tp=OfflineIngestorConfig, data={
    "nexus_file": str(nexus), "done_writing_message_file": "", "config_file": "", "id": "",
    "dataset": {"allow_dataset_pid": True, "generate_dataset_pid": False, "dataset_pid_prefix": "",
                "default_instrument_id": "", "default_proposal_id": "", "default_owner_group": "",
                "default_access_groups": []},
    "ingestion": {"dry_run": True, "offline_ingestor_executable": ["scicat_background_ingestor"],
                  "max_offline_ingestors": 1, "offline_ingestors_wait_time": 1, "schemas_directory": "",
                  "fallback_schema_file_path": "", "check_if_dataset_exists_by_pid": False,
                  "check_if_dataset_exists_by_metadata": False, "check_if_dataset_exists_by_metadata_key": "job_id",
                  "file_handling": {"compute_file_stats": True, "compute_file_hash": False,
                                    "file_hash_algorithm": "blake2b", "save_file_hash": False,
                                    "hash_file_extension": "b2b", "ingestor_files_directory": "../ingestor",
                                    "message_to_file": False, "message_file_extension": "message.json",
                                    "file_path_type": "absolute", "data_directory": "",
                                    "data_file_open_max_tries": 1, "data_file_open_retry_delay": []}},
    "logging": {"verbose": False, "file_log": False, "file_log_base_name": "x", "file_log_timestamp": False,
                "logging_level": "WARNING", "log_message_prefix": "peer", "system_log": False,
                "system_log_facility": "mail", "graylog": False, "graylog_host": "", "graylog_port": "",
                "graylog_facility": ""},
    "scicat": {"host": args["scicat_url"], "token": args["token"], "additional_headers": {}, "timeout": 30,
               "stream": True, "verify": False, "health_endpoint": "health",
               "api_endpoints": {"datasets": "datasets", "proposals": "proposals", "origdatablocks": "origdatablocks",
                                 "instruments": "instruments", "samples": "samples"}},
}, strict=False)
logger = logging.getLogger("peer")
schema = MetadataSchema.from_file(pathlib.Path(args["schema"]))
with h5py.File(nexus, "r") as h5file:
    variables = extract_variables_values(variables=schema.variables, h5file=h5file, config=config,
                                         schema_id=schema.id, logger=logger)
files = create_data_file_list(nexus_file=nexus, ingestor_directory=nexus.parent, config=config.ingestion.file_handling,
                              source_folder=None, logger=logger)
dataset = create_scicat_dataset_instance(metadata_schema=schema.schema, variable_map=variables, data_file_list=files,
                                         config=config.dataset, logger=logger)
print(json.dumps(scicat_dataset_to_dict(dataset), default=str))
"""


def peer_dataset(bin_dir: Path, nexus_file: str, schema: str, *, scicat_url: str, token: str) -> dict[str, Any]:
    """The dataset scicat-ingestor builds for ``nexus_file`` with ``schema`` (its SC variables ask ``scicat_url``)."""
    args = json.dumps({"file": nexus_file, "schema": schema, "scicat_url": scicat_url.rstrip("/") + "/",
                       "token": token})
    done = subprocess.run([str(bin_dir / "python"), "-c", _DATASET_SCRIPT, args], capture_output=True, text=True,
                          timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"scicat-ingestor's dataset building failed: {done.stderr.strip()[-2000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    where, why = peer()
    print(where or f"unavailable: {why}")
