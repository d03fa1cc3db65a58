"""Memory flat with the backlog (issue 23.4): resident memory of `sfi listen` with 20,000 vs 2,000 queued jobs.

Target: the listener process tree's (supervisor + listener child + any worker processes) peak resident memory
with 20,000 jobs waiting is within 1.2x of that with 2,000, and ``/metrics`` shows the backlog
(``sfi_messages_unread``), while at most ``[listen] inflight_max`` (100) files are held in memory.

A real `sfi listen` (default: supervised), the real broker (Tansu), the SciCat test server in this process
answering each request after 0.2 s so that the backlog stays a backlog during the measured window
(``WINDOW`` seconds from the first dataset). Every job's wrdn names the same small NeXus file (its identity is
path and job, so each is a file of its own to the listener): writing 20,000 files would measure the disk.
Only the pl72 and wrdn of each job are published.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.kafka import ensure_topics
from scicat_fw_ingest.simulate import SimulatedJob
from scicat_fw_ingest.testing.broker import TansuBroker, free_port
from scicat_fw_ingest.testing.listener import WRITER_PREFIX, config_file, publish, write_ess_file
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

SMALL, LARGE = 2_000, 20_000
WINDOW = 20.0
RATIO = 1.2


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and every descendant process (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return -1.0


def _run(n: int, inflight_max: int | None, broker: TansuBroker, tmp: Path) -> tuple[int, float, float, float]:
    """Peak tree RSS, files held in memory at the end, unread messages at the end, datasets/s; for ``n`` jobs."""
    run_dir = tmp / f"run-{n}-{inflight_max}"
    data = run_dir / "data"
    data.mkdir(parents=True)
    topic = f"bench_backlog_{n}_{inflight_max or 'default'}"
    jobs = [SimulatedJob(filename="run.nxs", run_name=f"run_{i:05d}", control_topic=topic, pool_topic=topic,
                         instrument_name="DREAM", written_path=f"{WRITER_PREFIX}/run.nxs") for i in range(n)]
    write_ess_file(data / "run.nxs", jobs[0])
    cfg = load_config(None, env={}, overrides={"kafka": {"bootstrap.servers": broker.bootstrap}})
    ensure_topics(cfg, [topic])
    started = time.perf_counter()
    publish(cfg, jobs, only=("pl72", "wrdn"))
    published = time.perf_counter() - started
    extra = f"inflight_max = {inflight_max}\n" if inflight_max else ""
    port = free_port()
    with ScicatTestServer(record=False) as server:
        server.slow(0.2)
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SFI_")},
               "SFI_KAFKA_BOOTSTRAP": broker.bootstrap, "SFI_SCICAT_URL": server.url, "SFI_SCICAT_TOKEN": server.token,
               "SFI_CONFIG": str(config_file(run_dir, data, extra)), "SFI_STATE_DIR": str(run_dir / "state")}
        with open(run_dir / "listen.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "listen", "--topic", topic,
                                     "--group", f"g-{topic}", "--http-port", str(port)],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
        peak, metrics = 0, ""
        try:
            deadline = time.monotonic() + 90
            while "created " not in (run_dir / "listen.log").read_text(errors="replace"):
                if time.monotonic() > deadline or proc.poll() is not None:
                    print((run_dir / "listen.log").read_text(errors="replace")[-3000:])
                    raise RuntimeError("the listener never ingested a first file")
                time.sleep(0.2)
            first = time.monotonic()
            while time.monotonic() - first < WINDOW:
                peak = max(peak, _tree_rss(proc.pid))
                time.sleep(0.2)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
                metrics = resp.read().decode()
            done = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                       if line.startswith("sfi_datasets_total{"))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    held = _metric(metrics, "sfi_inflight_files")
    unread = _metric(metrics, "sfi_messages_unread")
    print(f"  {n:>6} jobs (published in {published:.1f} s), inflight_max {inflight_max or 'default (100)'}: "
          f"peak RSS {peak / 1e6:.0f} MB; at {WINDOW:.0f} s: {held:.0f} file(s) held in memory, "
          f"{unread:.0f} message(s) unread, {done:.0f} file(s) done")
    return peak, held, unread, done


def main() -> bool:
    with tempfile.TemporaryDirectory(prefix="sfi-bench-backlog-") as tmp, TansuBroker() as broker:
        small, _, small_unread, _ = _run(SMALL, None, broker, Path(tmp))
        large, large_held, large_unread, _ = _run(LARGE, None, broker, Path(tmp))
    ratio = large / small
    print(f"peak RSS {LARGE} / {SMALL} queued jobs: {large / 1e6:.0f} / {small / 1e6:.0f} MB = {ratio:.2f}x "
          f"(target <= {RATIO})")
    print(f"/metrics backlog: sfi_messages_unread {large_unread:.0f} ({LARGE} jobs), {small_unread:.0f} ({SMALL})")
    return ratio <= RATIO and large_unread > 0 and small_unread > 0 and large_held <= 100


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
