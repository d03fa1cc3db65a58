"""``sfi decode --json --topic`` against the bare library loop, on the same 100,000 messages of a topic.

Target (issue 23.6): sfi's wall time <= 1.2x that of a plain Python loop that reads the topic with
confluent-kafka (assign from the beginning, poll until the end of the partition), deserialises each
message with ess-streaming-data-types and prints its fields as JSON. Both are whole processes against a
real broker (Tansu), best of three, interleaved; the CPU-time ratio is printed too (steadier on a loaded
machine), the wall-time ratio is the target. The messages are those of ``bench_decode`` (pl72, 6s4t,
answ, x5f2, wrdn, f144, ev44) in turn. ``SFI_BENCH_DECODE_TOPIC_MESSAGES`` changes the 100,000.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from typing import Any

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.kafka import ensure_topics, make_producer
from scicat_fw_ingest.testing.broker import TansuBroker

TARGET = 1.2
N_MESSAGES = int(os.environ.get("SFI_BENCH_DECODE_TOPIC_MESSAGES", "100000"))
RUNS = 3
TOPIC = "bench_decode_topic"

_BARE = """
import json, sys
import numpy as np
import streaming_data_types as sdt
from confluent_kafka import Consumer, KafkaError, TopicPartition
from streaming_data_types.utils import get_schema

def plain(value):
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value

bootstrap, topic = sys.argv[1], sys.argv[2]
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-bare", "enable.partition.eof": True,
                     "enable.auto.commit": False})
consumer.assign([TopicPartition(topic, 0, -2)])
out = sys.stdout
while True:
    msg = consumer.poll(1.0)
    if msg is None:
        continue
    if msg.error():
        if msg.error().code() == KafkaError._PARTITION_EOF:
            break
        continue
    data = msg.value()
    value = sdt.DESERIALISERS[get_schema(data)](data)
    out.write(json.dumps(plain(value), default=str) + "\\n")
consumer.close()
"""


def _timed(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the process and its threads)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   env={k: v for k, v in os.environ.items() if not k.startswith("SFI_")})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> bool:
    from scicat_fw_ingest.testing.message_samples import SAMPLES

    samples = [data for data, _ in SAMPLES.values()]
    with TansuBroker() as broker:
        cfg = load_config(None, env={}, overrides={"kafka": {"bootstrap.servers": broker.bootstrap}})
        ensure_topics(cfg, [TOPIC])
        tuning: dict[str, Any] = {"linger.ms": 50, "batch.num.messages": 10000}
        producer = make_producer(cfg, **tuning)
        for i in range(N_MESSAGES):
            while True:
                try:
                    producer.produce(TOPIC, samples[i % len(samples)])
                    break
                except BufferError:
                    producer.poll(0.1)
        assert producer.flush(60) == 0
        sfi = [sys.executable, "-m", "scicat_fw_ingest", "decode", "--json", "-b", broker.bootstrap, "--topic", TOPIC]
        bare = [sys.executable, "-c", _BARE, broker.bootstrap, TOPIC]
        runs = [(_timed(sfi), _timed(bare)) for _ in range(RUNS)]
    t_sfi, t_bare = min(r[0][0] for r in runs), min(r[1][0] for r in runs)
    c_sfi, c_bare = min(r[0][1] for r in runs), min(r[1][1] for r in runs)
    ratio = t_sfi / t_bare
    print(f"{N_MESSAGES:,} messages from a topic ({', '.join(SAMPLES)} in turn): bare library loop {t_bare:.2f} s, "
          f"sfi decode --json --topic {t_sfi:.2f} s (CPU {c_bare:.2f} s vs {c_sfi:.2f} s: {c_sfi / c_bare:.2f}x)")
    print(f"ratio sfi / bare loop: {ratio:.2f} (target <= {TARGET})")
    return ratio <= TARGET


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    raise SystemExit(0 if main() else 1)
