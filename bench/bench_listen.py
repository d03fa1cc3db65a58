"""`sfi listen` end to end: wrdn published -> dataset + datablock stored in the SciCat test server.

Targets (issue 4): 1,000 jobs with checksums off at >= 100 datasets/s; at a steady 10 jobs/s the
latency p50 and p99 printed, p99 < 1 s. A real `sfi listen` process, a real broker (Tansu), the
SciCat test server in this process, real NeXus files.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.kafka import ensure_topics, make_producer
from scicat_fw_ingest.simulate import job_messages
from scicat_fw_ingest.testing.broker import TansuBroker
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scicat_fw_ingest.testing.listener import WRITER_PREFIX, config_file, make_jobs

N_THROUGHPUT = 1000
N_LATENCY = 100
RATE = 10.0


class _Watcher(threading.Thread):
    """Notes when each pid's datablock first appears in the server."""

    def __init__(self, server: ScicatTestServer) -> None:
        super().__init__(daemon=True)
        self.server, self.stop = server, threading.Event()
        self.seen: dict[str, float] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.perf_counter()
            with self.server.lock:
                keys = list(self.server.origdatablocks)
            for pid in keys:
                self.seen.setdefault(pid, now)
            time.sleep(0.002)


def _publish(producer, jobs, rate: float | None = None) -> dict[str, float]:
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i, job in enumerate(jobs):
        if rate:
            if i == 0:
                start = time.perf_counter()
            target = start + i / rate
            time.sleep(max(0.0, target - time.perf_counter()))
        messages = job_messages(job)[1:]
        for topic, value in messages[:-1]:
            producer.produce(topic, value, key=job.job_id.encode())
        producer.produce(messages[-1][0], messages[-1][1], key=job.job_id.encode())
        producer.poll(0)
        if rate:
            producer.flush(5)
        sent[job.job_id] = time.perf_counter()
    producer.flush(30)
    return sent


def main() -> bool:
    with tempfile.TemporaryDirectory() as tmp, TansuBroker() as broker, ScicatTestServer(record=False) as server:
        tmp_path = Path(tmp)
        data = tmp_path / "data"
        data.mkdir()
        cfg = load_config(None, env={}, overrides={"kafka": {"bootstrap.servers": broker.bootstrap}})
        topic = "bench_control"
        ensure_topics(cfg, [topic], partitions=4)
        made = time.perf_counter()
        jobs = make_jobs(data, 1 + N_THROUGHPUT + N_LATENCY, topic=topic)
        print(f"wrote {len(jobs)} NeXus files in {time.perf_counter() - made:.1f} s (prefix {WRITER_PREFIX})")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("SFI_")},
               "SFI_KAFKA_BOOTSTRAP": broker.bootstrap, "SFI_SCICAT_URL": server.url, "SFI_SCICAT_TOKEN": server.token,
               "SFI_CONFIG": str(config_file(tmp_path, data, os.environ.get("BENCH_EXTRA", ""))),
               "SFI_STATE_DIR": str(tmp_path / "state")}
        with open(tmp_path / "listen.log", "wb") as log:  # the listener has its own copy of the descriptor
            proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "listen", "--topic", topic,
                                     "--workers", os.environ.get("BENCH_WORKERS", "4")],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
        watcher = _Watcher(server)
        watcher.start()
        producer = make_producer(cfg)
        try:
            _publish(producer, jobs[:1])  # warm-up: the listener has joined its group once this one is in
            deadline = time.monotonic() + 60
            while len(watcher.seen) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            if not watcher.seen:
                print("listener never ingested the warm-up job; log:\n" + (tmp_path / "listen.log").read_text())
                return False

            batch = jobs[1:1 + N_THROUGHPUT]
            t0 = time.perf_counter()
            _publish(producer, batch)
            published = time.perf_counter() - t0
            while len(watcher.seen) < 1 + N_THROUGHPUT and time.perf_counter() - t0 < 120:
                time.sleep(0.02)
            elapsed = max(watcher.seen.values()) - t0
            done = len(watcher.seen) - 1
            rate = done / elapsed
            print(f"throughput: {done} jobs in {elapsed:.2f} s = {rate:.0f} datasets/s "
                  f"(published in {published:.2f} s; target >= 100, ratio {rate / 100:.2f})")

            steady = jobs[1 + N_THROUGHPUT:]
            sent = _publish(producer, steady, rate=RATE)
            while len(watcher.seen) < len(jobs) and time.perf_counter() - max(sent.values()) < 60:
                time.sleep(0.02)
            pid_of = {pid.rsplit("/", 1)[-1]: pid for pid in watcher.seen}
            latencies = sorted(watcher.seen[pid_of[j.job_id]] - sent[j.job_id] for j in steady
                               if j.job_id in pid_of)
            p50 = statistics.median(latencies)
            p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
            print(f"latency at {RATE:.0f} jobs/s over {len(latencies)} jobs: p50 {p50 * 1000:.0f} ms, "
                  f"p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms (target p99 < 1000 ms)")
            duplicates = sum(len(v) - 1 for v in server.origdatablocks.values())
            print(f"datasets {len(server.datasets)}, extra datablocks {duplicates}")
            return rate >= 100 and p99 < 1.0 and len(latencies) == N_LATENCY and duplicates == 0
        finally:
            watcher.stop.set()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
