"""The two-host tier: two `sfi listen` in one group as two hosts (separate state and lock directories, HDF5
locking off), the real SciCat backend 5.1.0 behind a fault proxy per host, kill -9 during datablock POSTs.

Each test ends with the issue's audit, read back as admin: every job one dataset with exactly one datablock
whose size is the file's, the dataset's size exact, none lost. The longer run of the issue's acceptance (300
jobs, 4 partitions, 8 kills, both accounts, both versions) is ``python -m bench.soak_failover``.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.daemon.procpool import ProcessIngestor
from scicat_fw_ingest.ingest import open_sink
from scicat_fw_ingest.kafka import ensure_topics
from scicat_fw_ingest.scicat import pid_path
from scicat_fw_ingest.testing.failover import TwoHosts, publish, wait_exact, wait_rule_used
from scicat_fw_ingest.testing.listener import ListenerProcess, config_file, make_jobs, wait_for
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

pytestmark = pytest.mark.kafka


@pytest.fixture
def backend(real_scicat_factory):
    return real_scicat_factory("5.1.0")


def test_kill_9_during_posts_stored_late_and_never_arriving(tmp_path: Path, backend, kafka_config,
                                                            kafka_bootstrap: str, topic: str) -> None:
    """Host a's first datablock POST is stored 22 s late (later than the takeover wait: host b, taking over,
    posts its own, so the late one makes a duplicate that b's verification deletes); its second never reaches
    the server. a is killed with both in flight; b ends with each dataset exactly once."""
    site = TwoHosts(tmp_path, backend, kafka_bootstrap, topic, verify_after=15.0)  # after the late one lands
    try:
        site["a"].proxy.hold(22.0, path_contains="rigdatablocks", method="POST")
        site["a"].proxy.drop(path_contains="rigdatablocks", method="POST", after=60.0)
        ensure_topics(kafka_config, [topic], partitions=2)
        site.start("a", "b")
        site.wait_assigned("a")
        site.wait_assigned("b")
        jobs = make_jobs(site.data_dir, 8, topic=topic)
        publish(kafka_config, jobs, partitions=2)
        wait_rule_used(site["a"].proxy)
        time.sleep(1.5)  # a commits what it finished; the two POSTs stay in flight
        site["a"].kill()
        # b takes over, posts what it finds missing; the late one lands; b's verification deletes it
        wait_for(lambda: "identical datablocks: deleted 1 duplicate(s)" in site["b"].log(), 60,
                 "host b to repair the duplicate the late POST made")
        result = wait_exact(backend, jobs, site.data_dir, 30)
    finally:
        site.stop()
    assert result.exact, (result.line(), result.duplicates, result.mismatches, result.lost, site.logs()[-4000:])
    log_b = site["b"].log()
    assert "taking over" in log_b and "will verify" in log_b, log_b[-3000:]


def test_non_admin_account_outage_then_a_host_dies(tmp_path: Path, backend, kafka_config, kafka_bootstrap: str,
                                                   topic: str) -> None:
    """The non-admin ingestor account (reads back through ``access_group``). SciCat is down while both hosts
    take files: each queues its files without committing them; host a dies; SciCat comes back; host b ingests
    all of them — including a's — and a datablock POST of a's that never arrived is made good by b."""
    site = TwoHosts(tmp_path, backend, kafka_bootstrap, topic, user="ingestor", access_group="ingestor")
    try:
        ensure_topics(kafka_config, [topic], partitions=2)
        site.start("a", "b")
        site.wait_assigned("a")
        site.wait_assigned("b")
        jobs = make_jobs(site.data_dir, 10, topic=topic)
        for host in ("a", "b"):
            site[host].proxy.refuse(503, n=10**6)
        publish(kafka_config, jobs, partitions=2)
        wait_for(lambda: "will retry" in site["a"].log() and "will retry" in site["b"].log(), 30,
                 "both hosts to queue files")
        site["a"].proxy.clear()
        site["a"].proxy.drop(path_contains="rigdatablocks", method="POST", after=60.0)
        wait_rule_used(site["a"].proxy)  # a's first datablock POST after the outage is lost on the way
        site["a"].kill()
        site["b"].proxy.clear()  # the outage ends
        result = wait_exact(backend, jobs, site.data_dir, 60)
    finally:
        site.stop()
    assert result.exact, (result.line(), result.duplicates, result.mismatches, result.lost, site.logs()[-4000:])
    status, doc = backend.request("GET", f"/api/v3/Datasets/{pid_path(jobs[0].job_id)}")
    assert status == 200 and doc["accessGroups"] == ["ess", "dream", "ingestor"]


def test_a_worker_whose_listener_stopped_renewing_its_lease_writes_nothing(tmp_path: Path) -> None:
    """The fence of a frozen listener's workers (SIGSTOP of the main process): past the lease, a worker sends
    no write and reports a retryable outcome."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    jobs = make_jobs(data_dir, 2, topic="t")
    with ScicatTestServer() as server:
        cfg = load_config(config_file(tmp_path, data_dir), env={"SFI_SCICAT_URL": server.url,
                                                                "SFI_SCICAT_TOKEN": server.token})
        sink, _ = open_sink(cfg)
        pool = ProcessIngestor(cfg, 1, sink, fence_after=1.0)
        polling = threading.Event()

        def poll_loop() -> None:  # what the listener's poll loop does
            while not polling.wait(0.1):
                pool.renew_lease()

        renewer = threading.Thread(target=poll_loop, daemon=True)
        renewer.start()
        try:
            first = pool.ingest(str(jobs[0].written_path))
            assert first.status == "created", first.error
            polling.set()  # the listener froze (SIGSTOP): no renewal
            renewer.join()
            time.sleep(1.5)
            fenced = pool.ingest(str(jobs[1].written_path))
            assert fenced.status == "failed" and fenced.retryable
            assert "not sent" in (fenced.error or "") and "lease" in (fenced.error or "")
            pool.renew_lease()  # thawed (had it kept its partitions): writes go again
            assert pool.ingest(str(jobs[1].written_path)).status == "created"
        finally:
            pool.close()
        assert len(server.datasets) == 2
        posts = [r for r in server.requests if r.method == "POST" and "Datasets" in r.path]
        assert len(posts) == 2 + 2  # two datasets, two datablocks: the fenced attempt sent nothing


def test_worker_processes_die_with_a_killed_listener(tmp_path: Path, kafka_config, kafka_bootstrap: str,
                                                    topic: str) -> None:
    """kill -9 of the listener takes its ingest workers with it at once (PR_SET_PDEATHSIG), so none of them can
    post after the partition went to another host."""
    from scicat_fw_ingest.testing.listener import publish as publish_one

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    jobs = make_jobs(data_dir, 1, topic=topic)
    with ScicatTestServer() as server:
        env = {"SFI_KAFKA_BOOTSTRAP": kafka_bootstrap, "SFI_SCICAT_URL": server.url,
               "SFI_SCICAT_TOKEN": server.token, "SFI_CONFIG": str(config_file(tmp_path, data_dir)),
               "SFI_STATE_DIR": str(tmp_path / "state"), "SFI_LISTEN_PROCESSES": "1",
               # the process killed is the listener itself (not a supervising parent): its workers are its children
               "SFI_LISTEN_SUPERVISE": "false"}
        proc = ListenerProcess(["--topic", topic, "--group", f"g-{topic}"], env, tmp_path / "l.log").start()
        assert proc.proc is not None
        try:
            def workers() -> list[int]:
                out = []
                for entry in os.listdir("/proc"):
                    if entry.isdigit():
                        try:
                            stat = Path(f"/proc/{entry}/stat").read_text()
                        except OSError:
                            continue
                        cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                        if (int(stat.rsplit(")", 1)[1].split()[1]) == proc.proc.pid  # type: ignore[union-attr]
                                and b"spawn_main" in cmdline):
                            out.append(int(entry))
                return out

            publish_one(kafka_config, jobs)  # the pool spawns its worker for the first file
            wait_for(lambda: len(server.datasets) == 1, 60, "the first dataset")
            children = workers()
            assert children, "no worker process found"
        finally:
            proc.kill()
        deadline = time.monotonic() + 0.6  # the kernel's SIGKILL, not the once-a-second parent check
        alive = children
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [p for p in children if _alive(p)]
        assert not alive, f"worker processes {alive} outlived their listener"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, OSError):
        return False

