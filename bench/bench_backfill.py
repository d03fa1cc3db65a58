"""A cron backfill with checksums: ``sfi ingest-file DIR`` against scicat-ingestor, same files, same SciCat.

Targets (issue 14):
- throughput >= 40x scicat-ingestor's model (one ``scicat_background_ingestor`` process per file, as its
  daemon runs it), both with blake2b checksums (the peer's only algorithm), into the same real SciCat
  backend (testing/backend.py; the project's test server when the real one cannot run here, said so);
- <= 3 requests per new dataset (counted by the project's SciCat test server);
- memory flat in the batch size: peak RSS of a 5,000-file batch <= 1.1x that of a 200-file one.

The throughput target is judged on the real backend; the same comparison is then printed against the
project's SciCat test server (in its own process), where the server costs little, to show what the two
clients themselves can do. On the real backend the bench also measures the server's own pace: a bare
HTTP loop (requests, 4 threads, no file work) sending exactly sfi's two requests per dataset with sfi's
bodies. No client can be much faster than that loop; here (2 cores, node + a Python Mongo-wire database,
~3.5 ms of backend time per scientificMetadata key) it is far below 40x the peer, and the bench says so
next to the ratio. The files are copies of the real ``ess_coda_small.hdf`` (kafka-to-nexus, ESS CODA) with distinct
uuids, or generated ESS-layout files when the shared data is absent. The peer is timed on a sample
of files (one process each, sequentially) and its throughput compared; each figure is printed.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import h5py

from bench._peer import peer, schema_dir
from scicat_fw_ingest.testing.backend import RealBackend, why_unavailable
from scicat_fw_ingest.testing.nexus_files import write_ess
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

FILES = 300  # on the real backend (~10 files/s here: it sets the pace)
FILES_STAND_IN = 1000  # on the test server, as the earlier backfill bench: start-up amortised as in a real backfill
PEER_SAMPLE = 10
SPEED_TARGET = 40.0
REQUESTS_TARGET = 3.0
CEILING_DATASETS = 120
CEILING_THREADS = 4
MEMORY_FILES = (200, 5000)
MEMORY_TARGET = 1.1
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ess_coda_small.hdf"
_DEFAULTS = ('[defaults]\ncontactEmail = "data@facility.example"\nowner = "ingestor"\nownerGroup = "ess"\n'
             'principalInvestigator = "Unknown PI"\n')
_PEER_CONFIG = """\
nexus_file: ''
done_writing_message_file: ''
config_file: ''
id: ''
dataset:
  allow_dataset_pid: true
  generate_dataset_pid: false
  dataset_pid_prefix: ''
  default_instrument_id: ''
  default_proposal_id: ''
  default_owner_group: ess
  default_access_groups: [ess]
ingestion:
  dry_run: false
  offline_ingestor_executable: [scicat_background_ingestor]
  max_offline_ingestors: 10
  offline_ingestors_wait_time: 10
  schemas_directory: {schemas}
  fallback_schema_file_path: ''
  check_if_dataset_exists_by_pid: true
  check_if_dataset_exists_by_metadata: false
  check_if_dataset_exists_by_metadata_key: job_id
  file_handling:
    compute_file_stats: true
    compute_file_hash: true
    file_hash_algorithm: blake2b
    save_file_hash: false
    hash_file_extension: b2b
    ingestor_files_directory: ../ingestor
    message_to_file: false
    message_file_extension: message.json
    file_path_type: absolute
    data_directory: ''
    data_file_open_max_tries: 3
    data_file_open_retry_delay: []
kafka:
  topics: unused
  group_id: unused
  bootstrap_servers: localhost:9092
  security_protocol: plaintext
  sasl_mechanism: ''
  sasl_username: ''
  sasl_password: ''
  ssl_ca_location: ''
  individual_message_commit: false
  enable_auto_commit: true
  auto_offset_reset: earliest
logging:
  verbose: false
  file_log: false
  file_log_base_name: scicat_ingestor_log
  file_log_timestamp: false
  logging_level: WARNING
  log_message_prefix: PEER
  system_log: false
  system_log_facility: mail
  graylog: false
  graylog_host: ''
  graylog_port: ''
  graylog_facility: scicat.ingestor
scicat:
  host: {host}
  token: {token}
  additional_headers: {{}}
  timeout: 30
  stream: true
  verify: false
  health_endpoint: health
  api_endpoints:
    datasets: datasets
    proposals: proposals
    origdatablocks: origdatablocks
    instruments: instruments
    samples: samples
health_check:
  host: 127.0.0.1
  port: 0
"""


def _make_files(folder: Path, n: int, tag: str) -> None:
    """``n`` files with distinct uuids (copies of the real CODA file when it is here)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"{tag}{i:05d}.hdf"
        if SHARED.exists():
            shutil.copyfile(SHARED, path)
            with h5py.File(path, "r+") as fh:
                del fh["/entry/entry_identifier_uuid"]
                fh["/entry/entry_identifier_uuid"] = str(uuid.uuid4())
        else:
            write_ess(path, uuid=None, title=f"{tag} {i}", entry_identifier=str(i))


def _env(url: str, token: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SFI_")},
            "SFI_SCICAT_URL": url, "SFI_SCICAT_TOKEN": token}


def _sfi(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run sfi; (result, seconds, peak RSS MB of the largest process in its tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "scicat_fw_ingest", *args], capture_output=True, text=True,
                         env=env, check=False)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return run, elapsed, (peak if peak > before else 0) / 1024


def _peak_rss_mb(args: list[str], env: dict[str, str]) -> float:
    """Peak RSS of a fresh process tree (a child python measures its own children: no earlier runs mixed in)."""
    probe = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
             "stderr=subprocess.DEVNULL, check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "scicat_fw_ingest", *args],
                         capture_output=True, text=True, env=env, check=True)
    return int(out.stdout.strip()) / 1024


def _ceiling(url: str, token: str, config: Path, sample: Path) -> float:
    """Datasets/s of a bare HTTP loop sending sfi's own two requests (its bodies, new pids): the backend's limit."""
    import requests

    run, _, _ = _sfi(["-c", str(config), "ingest-file", str(sample), "--dry-run", "--json"], _env("", ""))
    record = json.loads(run.stdout.splitlines()[0])
    dataset = record["dataset"]
    datablock = {k: v for k, v in record["origdatablock"].items() if k != "datasetId"}
    errors: list[str] = []

    def loop(n: int) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {token}"
            for _ in range(n):
                pid = str(uuid.uuid4())
                for path, body in (("/Datasets", {**dataset, "pid": pid}),
                                   (f"/Datasets/{pid}/origdatablocks", datablock)):
                    resp = session.post(url + path, json=body, timeout=60)
                    if resp.status_code >= 300:
                        errors.append(f"{path}: {resp.status_code} {resp.text[:200]}")
                        return

    started = time.perf_counter()
    threads = [threading.Thread(target=loop, args=(CEILING_DATASETS // CEILING_THREADS,))
               for _ in range(CEILING_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"the bare loop was refused: {errors[0]}")
    return CEILING_DATASETS / (time.perf_counter() - started)


def _throughput(root: Path, url: str, token: str, where: str, files: int = FILES, *, ceiling: bool = False) -> bool:
    root.mkdir(parents=True, exist_ok=True)
    batch = root / "batch"
    _make_files(batch, files, "b")
    config = root / "sfi.toml"
    config.write_text(_DEFAULTS)
    workers = os.cpu_count() or 2
    print(f"[{where}]")
    limit = None
    if ceiling:
        limit = _ceiling(url, token, config, next(batch.iterdir()))
        print(f"the server's pace: a bare HTTP loop sending sfi's 2 requests per dataset (no file work, "
              f"{CEILING_THREADS} threads): {limit:.1f} datasets/s")
    run, t_sfi, _ = _sfi(["-c", str(config), "ingest-file", str(batch), "-j", str(workers), "--checksum", "blake2b",
                          "--json"], _env(url, token))
    created = run.stdout.count('"status": "created"')
    if run.returncode != 0 or created != files:
        print(f"sfi batch failed: exit {run.returncode}, {created}/{files} created; {run.stderr[-400:]}")
        return False
    sfi_rate = files / t_sfi
    share = f" = {sfi_rate / limit:.2f}x the bare loop" if limit else ""
    print(f"sfi ingest-file, {files} files, -j {workers}, blake2b: {t_sfi:.1f} s ({sfi_rate:.1f} files/s){share}")

    bin_dir, why = peer()
    schemas = schema_dir()
    if bin_dir is None or schemas is None:
        print(f"SKIPPED the scicat-ingestor comparison: {why or 'no bench-coda.imsc.yml schema'}")
        return True
    if not SHARED.exists():
        print(f"SKIPPED the scicat-ingestor comparison: {SHARED} is absent (its schema reads that layout)")
        return True
    sample = root / "peer"
    _make_files(sample, PEER_SAMPLE, "p")
    peer_config = root / "peer.yml"
    peer_config.write_text(_PEER_CONFIG.format(schemas=schemas, host=url, token=token))
    started = time.perf_counter()
    for path in sorted(sample.iterdir()):
        one = subprocess.run([str(bin_dir / "scicat_background_ingestor"), "-c", str(peer_config), "--nexus-file",
                              str(path)], capture_output=True, text=True, cwd=root, check=False)
        if one.returncode != 0:
            print(f"SKIPPED the scicat-ingestor comparison: it failed on {path.name} (exit {one.returncode}): "
                  f"{(one.stderr or one.stdout).strip()[-300:]}")
            return True
    t_peer = time.perf_counter() - started
    peer_rate = PEER_SAMPLE / t_peer
    ratio = sfi_rate / peer_rate
    print(f"scicat-ingestor, one process per file (its daemon's model), {PEER_SAMPLE} files: {t_peer:.1f} s "
          f"({peer_rate:.2f} files/s)")
    print(f"throughput ratio sfi / scicat-ingestor: {ratio:.1f}x (target >= {SPEED_TARGET:.0f}x)")
    if limit and ratio < SPEED_TARGET:
        best = max(limit, sfi_rate)
        print(f"  not reachable on this server: {SPEED_TARGET:.0f}x needs {SPEED_TARGET * peer_rate:.0f} datasets/s, "
              f"{SPEED_TARGET * peer_rate / best:.1f}x the fastest it served either client ({best:.1f}/s)")
    return ratio >= SPEED_TARGET


def _requests(root: Path) -> bool:
    folder = root / "requests"
    _make_files(folder, 50, "r")
    config = root / "sfi-requests.toml"
    config.write_text(_DEFAULTS)
    with ScicatTestServer() as server:
        run, _, _ = _sfi(["-c", str(config), "ingest-file", str(folder), "--json"], _env(server.url, server.token))
        created = run.stdout.count('"status": "created"')
        sent = [r for r in server.requests if "auth/login" not in r.path]
    # Profile lookups (scicat:proposal/instrument sources) are cached per worker process: counted apart.
    lookups = [r for r in sent if "/Datasets" not in r.path]
    per = (len(sent) - len(lookups) - 1) / max(1, created)  # less the one check before the batch
    print(f"requests per new dataset: {per:.2f} over {created} datasets (target <= {REQUESTS_TARGET:.0f}); "
          f"plus {len(lookups)} proposal/instrument lookups for the whole batch (cached per worker process)")
    return created == 50 and per <= REQUESTS_TARGET


def _memory(root: Path) -> bool:
    config = root / "sfi-memory.toml"
    config.write_text(_DEFAULTS)
    peaks = []
    for n in MEMORY_FILES:
        folder = root / f"memory{n}"
        started = time.perf_counter()
        _make_files(folder, n, "m")
        made = time.perf_counter() - started
        started = time.perf_counter()
        peaks.append(_peak_rss_mb(["-c", str(config), "ingest-file", str(folder), "--dry-run", "--json",
                                   "--checksum", "blake2b"], _env("", "")))
        print(f"{n} files (made in {made:.0f} s), dry run with checksums: peak RSS {peaks[-1]:.0f} MB "
              f"({time.perf_counter() - started:.1f} s)")
        shutil.rmtree(folder)
    ratio = peaks[1] / peaks[0]
    print(f"memory ratio {MEMORY_FILES[1]} vs {MEMORY_FILES[0]} files: {ratio:.2f}x (target <= {MEMORY_TARGET})")
    return ratio <= MEMORY_TARGET


def _test_server() -> tuple[subprocess.Popen[str], str, str]:
    """The project's SciCat test server in its own process (it must not share this process's CPU/GIL)."""
    proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest.testing.scicat_server", "--token", "bench-token"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().split()[1]
    token = proc.stdout.readline().split()[1]
    return proc, url, token


def main() -> bool:
    with tempfile.TemporaryDirectory(prefix="sfi-bench-backfill-") as tmp:
        root = Path(tmp)
        reason = why_unavailable()
        if reason is None:
            with RealBackend() as backend:
                ok = _throughput(root / "real", backend.url, backend.login("ingestor"),
                                 f"real SciCat backend {backend.version}", ceiling=True)
        else:
            print(f"SKIPPED the real SciCat backend ({reason})")
            ok = False
        # The same comparison where the server costs little: what the two clients themselves can do.
        proc, url, token = _test_server()
        try:
            _throughput(root / "stand-in", url, token, "the project's SciCat test server (not a target)",
                        FILES_STAND_IN)
        finally:
            proc.terminate()
            proc.wait(10)
        ok = _requests(root) and ok
        ok = _memory(root) and ok
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
