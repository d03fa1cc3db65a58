"""The listener's partition book against a real broker: a paused partition that comes back after a rebalance."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition

from scicat_fw_ingest.daemon._partitions import PartitionBook
from scicat_fw_ingest.kafka import ensure_topics, make_producer

pytestmark = pytest.mark.kafka


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})


def _poll_until(consumers: list[Consumer], done: Callable[[], bool], timeout: float) -> int:
    """Poll every consumer until ``done()``; the messages the first one read."""
    read = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done():
        for i, consumer in enumerate(consumers):
            msg = consumer.poll(0.1)
            if i == 0 and msg is not None and msg.error() is None:
                read += 1
    return read


def test_a_partition_paused_for_memory_is_read_again_when_it_comes_back_after_a_rebalance(
        kafka_config, kafka_bootstrap, topic) -> None:
    """librdkafka keeps the pause of a revoked partition; the book must resume it when it is assigned again
    (otherwise its files are never read: the 300-job failover soak lost 139 of them)."""
    ensure_topics(kafka_config, [topic], partitions=2)
    book = PartitionBook(takeover_wait=0.0, held_max=10, inflight_max=1)
    events: list[str] = []
    a = _consumer(kafka_bootstrap, f"g-{topic}")

    def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        events.append("assign")
        book.assign(consumer, partitions)

    def on_revoke(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        events.append("revoke")
        book.release([(p.topic, p.partition) for p in partitions])

    a.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
    _poll_until([a], lambda: len(book.assignment) == 2, 30)
    assert len(book.assignment) == 2
    book.bound_held(a, [], in_memory=1)  # the memory bound: every partition pauses
    assert book.held_paused == book.assignment
    # another host joins and leaves: both partitions come back to this consumer
    b = _consumer(kafka_bootstrap, f"g-{topic}")
    b.subscribe([topic])
    _poll_until([a, b], lambda: events.count("assign") >= 2, 30)
    b.close()
    _poll_until([a], lambda: events.count("assign") >= 3 and len(book.assignment) == 2, 30)
    assert events.count("assign") >= 3 and len(book.assignment) == 2, events
    producer = make_producer(kafka_config)
    for i in range(20):
        producer.produce(topic, b"m%d" % i, partition=i % 2)
    assert producer.flush(20) == 0
    # the loop's periodic check, with the memory freed: nothing may stay paused
    read = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and read < 20:
        book.bound_held(a, [], in_memory=0)
        read += _poll_until([a], lambda: False, 0.5)
    a.close()
    assert read == 20
