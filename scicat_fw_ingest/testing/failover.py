"""Two `sfi listen` as two hosts in one consumer group, each talking to the real SciCat backend through its
own fault proxy (so a test knows whose request it holds, drops or refuses), and an audit of what SciCat holds.

Used by ``tests/test_failover_two_hosts.py`` (bounded) and ``bench/soak_failover.py`` (the issue's acceptance).
Each host has its own state directory and its own ``[scicat] lock_dir`` — nothing shared but Kafka and SciCat
— and HDF5 file locking off, as on a shared file system.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from scicat_fw_ingest.config import Config
from scicat_fw_ingest.kafka import ensure_topics, make_producer
from scicat_fw_ingest.scicat import pid_path
from scicat_fw_ingest.simulate import SimulatedJob as Job
from scicat_fw_ingest.simulate import job_messages
from scicat_fw_ingest.testing.backend import ACCOUNTS, RealBackend
from scicat_fw_ingest.testing.fault_proxy import FaultProxy

from .listener import DEFAULTS_TOML, WRITER_PREFIX, ListenerProcess, wait_for

#: Short enough for a test, in the ratios of a deployment: a POST lives at most ``timeout`` (+ ``grace``), the
#: group notices a dead member after ``session.timeout.ms``.
SCICAT_TIMEOUT = 2.0
GRACE = 0.5
SESSION_MS = 6000


def failover_config(path: Path, data_dir: Path, *, verify_after: float = 5.0, checksum: str = "sha256") -> Path:
    path.write_text(
        f"{DEFAULTS_TOML}\n"
        f"[ingest]\nchecksum = \"{checksum}\"\nfile_wait = 2.0\npath_map = [[\"{WRITER_PREFIX}\", \"{data_dir}\"]]\n"
        f"[listen]\nretry_base = 0.3\nretry_max = 1.0\nverify_after = {verify_after}\nprocesses = 1\nworkers = 4\n"
        f"[scicat]\ntimeout = {SCICAT_TIMEOUT}\ngrace = {GRACE}\nmax_attempts = 3\nbackoff = 0.1\n"
        f"[kafka]\n\"session.timeout.ms\" = {SESSION_MS}\n\"heartbeat.interval.ms\" = 1000\n"
    )
    return path


@dataclass
class Host:
    name: str
    proxy: FaultProxy
    listener: ListenerProcess
    kills: int = 0

    def start(self) -> None:
        self.listener.start()

    def alive(self) -> bool:
        return self.listener.proc is not None and self.listener.proc.poll() is None

    def kill(self) -> None:
        self.listener.kill()
        self.kills += 1

    def log(self) -> str:
        return self.listener.log()


@dataclass
class TwoHosts:
    """Hosts ``a`` and ``b``: same group and topic, separate state and lock directories, one proxy each."""

    tmp: Path
    backend: RealBackend
    bootstrap: str
    topic: str
    user: str = "admin"
    access_group: str | None = None
    verify_after: float = 5.0
    hosts: dict[str, Host] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = self.tmp / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = failover_config(self.tmp / "sfi.toml", self.data_dir, verify_after=self.verify_after)
        for name in ("a", "b"):
            proxy = FaultProxy(self.backend.base).start()
            env = {"SFI_KAFKA_BOOTSTRAP": self.bootstrap, "SFI_SCICAT_URL": proxy.url,
                   "SFI_SCICAT_USERNAME": self.user, "SFI_SCICAT_PASSWORD": ACCOUNTS[self.user],
                   "SFI_CONFIG": str(cfg_path), "SFI_STATE_DIR": str(self.tmp / f"state-{name}"),
                   "SFI_SCICAT_LOCK_DIR": str(self.tmp / f"locks-{name}"), "HDF5_USE_FILE_LOCKING": "FALSE"}
            if self.access_group:
                env["SFI_SCICAT_ACCESS_GROUP"] = self.access_group
            listener = ListenerProcess(["--topic", self.topic, "--group", f"g-{self.topic}"], env,
                                       self.tmp / f"{name}.log")
            self.hosts[name] = Host(name, proxy, listener)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def start(self, *names: str) -> None:
        for name in names or tuple(self.hosts):
            self.hosts[name].start()

    def wait_assigned(self, name: str, timeout: float = 30.0) -> None:
        """Until ``name`` holds at least one partition of the topic (its latest assignment is not empty)."""
        def holds() -> bool:
            lines = [ln for ln in self.hosts[name].log().splitlines() if "partitions assigned:" in ln]
            return bool(lines) and f"{self.topic}/" in lines[-1]
        wait_for(holds, timeout, f"host {name} to be assigned a partition")

    def stop(self) -> list[int]:
        codes = []
        for host in self.hosts.values():
            if host.alive():
                try:
                    codes.append(host.listener.terminate(40))
                except Exception:
                    host.listener.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
                    codes.append(-9)
            host.proxy.stop()
        return codes

    def logs(self) -> str:
        return "".join(f"--- host {h.name}\n{h.log()}" for h in self.hosts.values() if h.listener.log_path.exists())


def publish(cfg: Config, jobs: list[Job], *, partitions: int) -> None:
    """Each job's control messages, keyed by job (a job stays in one partition)."""
    ensure_topics(cfg, sorted({j.control_topic for j in jobs}), partitions=partitions)
    producer = make_producer(cfg)
    for job in jobs:
        for topic, value in job_messages(job)[1:]:
            producer.produce(topic, value, key=job.job_id.encode())
        producer.poll(0)
    assert producer.flush(20) == 0


@dataclass
class Audit:
    """What SciCat holds for the jobs, read as admin: the issue's figures."""

    jobs: int
    datasets: int = 0
    #: datablocks whose checksum is not the final file's (a file read before its writer finished it)
    stale: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # datasets with more than one datablock
    mismatches: list[str] = field(default_factory=list)  # a block or dataset size/file count not the file's
    lost: list[str] = field(default_factory=list)  # jobs without a dataset, or with a dataset without datablock

    @property
    def exact(self) -> bool:
        return self.datasets == self.jobs and not (self.duplicates or self.mismatches or self.lost or self.stale)

    def line(self) -> str:
        return (f"jobs {self.jobs}  datasets {self.datasets}  duplicates {len(self.duplicates)}  "
                f"mismatches {len(self.mismatches)}  not the final file {len(self.stale)}  lost {len(self.lost)}")


def audit(backend: RealBackend, jobs: list[Job], data_dir: Path) -> Audit:
    """One look per job (a dataset's pid is its job id: the file's entry_identifier_uuid); a list query would be
    capped by the backend (100 by default)."""
    token = backend.login("admin")
    result = Audit(len(jobs))
    for job in jobs:
        status, doc = backend.request("GET", f"/api/v3/Datasets/{pid_path(job.job_id)}", token=token)
        if status == 404 or not isinstance(doc, dict) or not doc:
            result.lost.append(f"{job.job_id}: no dataset")
            continue
        assert status == 200, doc
        result.datasets += 1
        status, blocks = backend.request("GET", f"/api/v3/Datasets/{pid_path(doc['pid'])}/origdatablocks",
                                         token=token)
        assert status == 200 and isinstance(blocks, list), blocks
        size = (data_dir / job.filename).stat().st_size
        if not blocks:
            result.lost.append(f"{job.job_id}: dataset without datablock")
            continue
        if len(blocks) > 1:
            result.duplicates.append(f"{job.job_id}: {len(blocks)} datablocks")
        files = blocks[0].get("dataFileList") or []
        chk = files[0].get("chk") if files else None
        if chk is not None and chk != _sha256(data_dir / job.filename):
            result.stale.append(f"{job.job_id}: datablock checksum is not the final file's")
        if ((doc.get("size"), doc.get("numberOfFiles")) != (size, 1) or blocks[0].get("size") != size
                or [f.get("size") for f in files] != [size]):
            result.mismatches.append(f"{job.job_id}: dataset {doc.get('size')}/{doc.get('numberOfFiles')}, "
                                     f"block {blocks[0].get('size')}, file {size}")
    return result


def _sha256(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def wait_exact(backend: RealBackend, jobs: list[Job], data_dir: Path, timeout: float) -> Audit:
    """Audit until every job is exactly once (or ``timeout``); the last audit."""
    deadline = time.monotonic() + timeout
    while True:
        result = audit(backend, jobs, data_dir)
        if result.exact or time.monotonic() > deadline:
            return result
        time.sleep(1.0)


def wait_rule_used(proxy: FaultProxy, timeout: float = 30.0) -> None:
    """Until every rule of ``proxy`` has been applied (the requests it holds or drops have arrived)."""
    wait_for(lambda: all(r.remaining == 0 for r in proxy.rules), timeout, "the proxy's rules to be used")


def blocks_and_size(backend: RealBackend, pid: str) -> tuple[int, int, int]:
    """(number of datablocks, dataset size, dataset numberOfFiles) as the admin sees them."""
    status, blocks = backend.request("GET", f"/api/v3/Datasets/{pid_path(pid)}/origdatablocks")
    assert status == 200, blocks
    status, dataset = backend.request("GET", f"/api/v3/Datasets/{pid_path(pid)}")
    assert status == 200, dataset
    return len(blocks), int(dataset.get("size") or 0), int(dataset.get("numberOfFiles") or 0)
