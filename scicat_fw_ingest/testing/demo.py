"""``make demo``: the main job on embedded defaults, with nothing configured.

Starts an embedded Kafka-protocol broker, tails a control topic with ``sfi decode --follow`` and
publishes one complete file-writer job (pl72, answ, x5f2, 6s4t, answ, wrdn) to it, so a newcomer
sees what the writer says and how sfi reads it. Exits by itself (or on Ctrl-C).
"""

from __future__ import annotations

import subprocess
import sys
import time

from ..config import load_config
from ..kafka import ensure_topics, make_producer, produce_sync
from ..simulate import Job, job_messages
from .broker import TansuBroker


def _say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"==> {text}", flush=True)


def main() -> int:
    with TansuBroker() as broker:
        _say(f"embedded Kafka-protocol broker (Tansu) on {broker.bootstrap}")
        cfg = load_config(None, env={}, overrides={"kafka": {"bootstrap.servers": broker.bootstrap}})
        job = Job(filename="demo/run_0001.nxs", run_name="demo_run_0001", instrument_name="DEMO",
                  control_topic="demo_control", pool_topic="demo_pool",
                  metadata='{"proposal_id": "DEMO-2026-001"}', heartbeats=2)
        ensure_topics(cfg, [job.pool_topic, job.control_topic])
        messages = [m for m in job_messages(job) if m[0] == job.control_topic]
        _say(f"sfi decode -b {broker.bootstrap} --topic {job.control_topic} --follow --count {len(messages)}")
        tail = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "decode", "-b", broker.bootstrap,
                                 "--topic", job.control_topic, "--follow", "--count", str(len(messages))])
        time.sleep(1.0)  # let the tail attach before the job starts
        producer = make_producer(cfg)
        _say(f"publishing one simulated file-writer job {job.job_id}")
        for topic, value in job_messages(job):
            produce_sync(producer, topic, value)
            time.sleep(0.3)
        try:
            code = tail.wait(timeout=30)
        except subprocess.TimeoutExpired:
            tail.terminate()
            code = 1
        _say("done: the job went pl72 → answ → x5f2 → 6s4t → answ → wrdn" if code == 0 else f"decode exited {code}")
        return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
