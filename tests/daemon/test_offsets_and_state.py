"""The at-least-once bookkeeping (commit points) and the listener's durable state store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scicat_fw_ingest.daemon._offsets import OffsetTracker
from scicat_fw_ingest.daemon.state import QUEUED, FileRecord, StateError, StateStore

TP = ("control", 0)


def stored(store: StateStore, file_key: str) -> FileRecord:
    """The record of ``file_key``; a key the store does not hold fails the test here."""
    record = store.get_file(file_key)
    assert record is not None, f"no record for {file_key}"
    return record


def points(tracker: OffsetTracker) -> list[tuple[str, int, int]]:
    return [(tp.topic, tp.partition, tp.offset) for tp in tracker.to_commit()]


def test_commit_point_is_the_lowest_offset_still_in_flight() -> None:
    tracker = OffsetTracker()
    for offset in range(5):
        tracker.add(TP, offset)
    tracker.done(TP, 0)
    tracker.done(TP, 2)  # finished out of order: 1 still in flight holds the commit point
    tracker.done(TP, 3)
    assert points(tracker) == [("control", 0, 1)]
    tracker.done(TP, 1)
    assert points(tracker) == [("control", 0, 4)]
    tracker.done(TP, 4)
    assert points(tracker) == [("control", 0, 5)]


def test_nothing_new_to_commit_after_a_commit_and_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    other = ("control", 1)
    tracker.add(TP, 10)
    tracker.add(other, 3)
    tracker.done(TP, 10)
    committed = tracker.to_commit()
    assert sorted((tp.partition, tp.offset) for tp in committed) == [(0, 11), (1, 3)]
    tracker.committed(committed)
    assert tracker.to_commit() == []
    assert tracker.inflight() == 1 and tracker.inflight([TP]) == 0
    tracker.forget([other])
    assert tracker.inflight() == 0


def test_state_store_survives_reopening_and_keeps_the_queue(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.put_run_start("job-1", b"pl72-bytes", "t/0@0")
    store.record_file("/w/a.nxs", job_id="job-1", writer_path="/w/a.nxs", status=QUEUED, source="t/0@5",
                      wrdn=b"wrdn", error="SciCat down", next_attempt=time.time() - 1)
    store.record_file("/w/b.nxs", job_id="job-2", writer_path="/w/b.nxs", status="failed", source="t/0@9",
                      wrdn=b"wrdn2", error="not HDF5")
    store.record_bad_message("t/0@7", "too short", b"abc")
    store.close()
    again = StateStore(tmp_path / "state")  # as after a crash and restart
    assert again.get_run_start("job-1") == b"pl72-bytes"
    assert [r.file_key for r in again.due(time.time())] == ["/w/a.nxs"]
    assert again.counts() == {"queued": 1, "failed": 1}
    assert [b.source for b in again.bad_messages()] == ["t/0@7"]
    assert again.requeue() == 1 and again.counts() == {"queued": 2}
    again.record_file("/w/a.nxs", job_id=None, writer_path="/w/a.nxs", status="created", source="t/0@5",
                      wrdn=b"wrdn", pid="pid-a")
    record = stored(again, "/w/a.nxs")
    assert record.status == "created" and record.attempts == 2 and record.job_id == "job-1"
    assert again.directory == tmp_path / "state"
    mode = again._query("PRAGMA journal_mode")[0][0]
    assert mode == "wal"


def test_old_run_starts_are_pruned_and_recent_ones_kept(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.put_run_start("old", b"a", "t/0@0")
    store._db.execute("UPDATE run_starts SET received_at = ? WHERE job_id = 'old'", (time.time() - 40 * 86400,))
    store.put_run_start("new", b"b", "t/0@1")
    assert store.prune_run_starts(30 * 86400) == 1
    assert store.get_run_start("old") is None and store.get_run_start("new") == b"b"


def test_unusable_state_directory_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateError, match="cannot open the state store"):
        StateStore(blocker / "state")


@pytest.mark.slow
def test_ten_thousand_one_megabyte_garbage_messages_keep_the_state_small(tmp_path: Path) -> None:
    import os

    store = StateStore(tmp_path / "state")
    garbage = bytearray(os.urandom(1 << 20))  # 1 MiB; a different first bytes per message, generated cheaply
    for i in range(10_000):
        garbage[:8] = i.to_bytes(8, "big")
        store.record_bad_message(f"detector/0@{i}", "unknown schema id", bytes(garbage))
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = sum(p.stat().st_size for p in (tmp_path / "state").iterdir())
    assert size < 50 * 1024 * 1024, f"state is {size / 1e6:.1f} MB"
    kept = store.bad_messages()
    assert store.bad_max <= len(kept) <= store.bad_max * 1.05 + 1  # pruned by count, newest kept
    assert kept[-1].source == "detector/0@9999"
    assert kept[-1].payload_length == 1 << 20 and len(kept[-1].payload_sha256 or "") == 64
    assert len(store.bad_payload("detector/0@9999") or b"") == 4096
    print(f"state after 10,000 x 1 MiB garbage: {size / 1e6:.1f} MB")  # the figure for the docs


def test_old_bad_messages_are_pruned_by_age(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state", bad_days=7)
    store.record_bad_message("t/0@1", "old", b"x")
    store._db.execute("UPDATE bad_messages SET received_at = ?", (time.time() - 8 * 86400,))
    store.record_bad_message("t/0@2", "new", b"y")
    assert store.prune_bad_messages() == 1 and [b.source for b in store.bad_messages()] == ["t/0@2"]


def test_a_file_is_identified_by_path_and_job() -> None:
    from scicat_fw_ingest.daemon.state import file_identity

    assert file_identity("/d/a.nxs", "job-1") != file_identity("/d/a.nxs", "job-2")
    assert file_identity("/d/a.nxs", None, size=10, mtime=1.5) != file_identity("/d/a.nxs", None, size=11, mtime=1.5)
    assert file_identity("/d/a.nxs") == "/d/a.nxs"


def test_a_state_database_of_the_previous_schema_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    from scicat_fw_ingest.daemon.state import SCHEMA_VERSION, file_identity

    (tmp_path / "state").mkdir()
    old = sqlite3.connect(tmp_path / "state" / "sfi-state.sqlite3", isolation_level=None)
    old.executescript("""
        CREATE TABLE run_starts (job_id TEXT PRIMARY KEY, received_at REAL NOT NULL, source TEXT NOT NULL,
                                 payload BLOB NOT NULL);
        CREATE TABLE files (file_key TEXT PRIMARY KEY, job_id TEXT, writer_path TEXT NOT NULL, status TEXT NOT NULL,
                            pid TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL,
                            updated_at REAL NOT NULL, source TEXT NOT NULL, wrdn BLOB NOT NULL);
        CREATE TABLE bad_messages (source TEXT PRIMARY KEY, reason TEXT NOT NULL, received_at REAL NOT NULL,
                                   payload BLOB);
    """)
    old.execute("INSERT INTO files VALUES ('/w/a.nxs', 'job-1', '/w/a.nxs', 'created', 'p', NULL, 1, NULL, 5.0, "
                "'t/0@3', x'00')")
    old.execute("INSERT INTO files VALUES ('/w/b.nxs', NULL, '/w/b.nxs', 'failed', NULL, 'bad', 1, NULL, 6.0, "
                "'t/0@4', x'00')")
    old.execute("INSERT INTO bad_messages VALUES ('t/0@1', 'junk', 1.0, ?)", (b"z" * 100_000,))
    old.close()
    store = StateStore(tmp_path / "state")
    assert store._query("PRAGMA user_version")[0][0] == SCHEMA_VERSION
    done = store.get_file(file_identity("/w/a.nxs", "job-1"))
    assert done is not None and done.status == "created" and done.first_seen == 5.0
    assert stored(store, "/w/b.nxs").status == "failed"
    (bad,) = store.bad_messages()
    assert bad.payload_length == 100_000 and len(store.bad_payload("t/0@1") or b"") == 4096
    store.close()
    assert stored(StateStore(tmp_path / "state"), file_identity("/w/a.nxs", "job-1")).pid == "p"  # idempotent


def test_the_missing_file_clock_starts_when_a_file_enters_the_queue(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")

    def record(status: str, next_attempt: float | None = None) -> None:
        store.record_file("k", job_id="j", writer_path="/w/a.nxs", source="t/0@1", wrdn=b"", status=status,
                          next_attempt=next_attempt)

    record("failed")
    store._db.execute("UPDATE files SET first_seen = 1.0")
    record(QUEUED, next_attempt=0.0)  # queued again (a new wrdn): a new clock
    first = stored(store, "k").first_seen
    assert first is not None and first > 1.0
    record(QUEUED, next_attempt=0.0)  # still queued: the clock keeps running
    assert stored(store, "k").first_seen == first


def test_a_schema_2_database_gets_verify_at_and_verifications_come_due(tmp_path: Path) -> None:
    """Schema 2 → 3: ``verify_at`` added in place; a scheduled verification is durable and comes due on time."""
    import sqlite3

    from scicat_fw_ingest.daemon.state import SCHEMA_VERSION

    (tmp_path / "state").mkdir()
    old = sqlite3.connect(tmp_path / "state" / "sfi-state.sqlite3", isolation_level=None)
    old.executescript("""
        CREATE TABLE files (file_key TEXT PRIMARY KEY, job_id TEXT, writer_path TEXT NOT NULL, status TEXT NOT NULL,
                            pid TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL,
                            updated_at REAL NOT NULL, source TEXT NOT NULL, wrdn BLOB NOT NULL, first_seen REAL);
        CREATE TABLE bad_messages (source TEXT PRIMARY KEY, reason TEXT NOT NULL, received_at REAL NOT NULL,
                                   payload BLOB, payload_length INTEGER, payload_sha256 TEXT);
        PRAGMA user_version = 2;
    """)
    old.execute("INSERT INTO files VALUES ('k', 'job', '/w/a.nxs', 'created', 'p', NULL, 1, NULL, 5.0, 't/1@7', "
                "x'00', 5.0)")
    old.close()
    store = StateStore(tmp_path / "state")
    assert store._query("PRAGMA user_version")[0][0] == SCHEMA_VERSION == 4
    assert stored(store, "k").verify_at is None and store.due_verify(time.time()) == []
    store.schedule_verify("k", time.time() + 60)
    store.record_file("k", job_id="job", writer_path="/w/a.nxs", status="exists", source="t/1@7", wrdn=b"\0")
    store.close()
    store = StateStore(tmp_path / "state")  # durable, and an outcome recorded meanwhile keeps it
    assert store.due_verify(time.time()) == []
    (due,) = store.due_verify(time.time() + 61)
    assert due.file_key == "k" and due.status == "exists" and due.source == "t/1@7"
    store.schedule_verify("k", None)
    assert store.due_verify(time.time() + 61) == []


def test_a_schema_3_database_forgets_the_wrdn_watch_made_up_and_retries_the_file_the_same(tmp_path: Path) -> None:
    """Schema 3 → 4: a watched file's made-up wrdn is dropped in place; its retry gets the same run as before."""
    import sqlite3

    from streaming_data_types import serialise_pl72, serialise_wrdn

    from scicat_fw_ingest.completion.wrdn import run_info_for
    from scicat_fw_ingest.daemon.record import requeued_file
    from scicat_fw_ingest.daemon.state import SCHEMA_VERSION, _SCHEMA

    (tmp_path / "state").mkdir()
    old = sqlite3.connect(tmp_path / "state" / "sfi-state.sqlite3", isolation_level=None)
    old.executescript(_SCHEMA + "PRAGMA user_version = 3;")
    made_up = serialise_wrdn("sfi-watch", "job-7", False, "/archive/run7.nxs", None, None)  # what watch stored
    real = serialise_wrdn("kafka-to-nexus:host--pid:1", "job-8", False, "/w/run8.nxs", '{"proposal": "p1"}', None)
    pl72 = serialise_pl72("job-7", "run7.nxs", run_name="run7", instrument_name="MUSR", metadata='{"a": 1}')
    old.execute("INSERT INTO run_starts (job_id, received_at, source, payload) VALUES ('job-7', 1.0, 'runinfo/0@3', ?)",
                (pl72,))
    row = ("INSERT INTO files (file_key, job_id, writer_path, status, attempts, next_attempt, updated_at, source, "
           "wrdn) VALUES (?, ?, ?, 'queued', 1, 0.0, 5.0, ?, ?)")
    old.execute(row, ("/archive/run7.nxs#size=1,mtime=2.000000", "job-7", "/archive/run7.nxs",
                      "watch:/archive + runinfo/0@3", made_up))
    old.execute(row, ("/w/run8.nxs#job=job-8", "job-8", "/w/run8.nxs", "t/0@9", real))
    old.close()
    store = StateStore(tmp_path / "state")
    try:
        assert store._query("PRAGMA user_version")[0][0] == SCHEMA_VERSION == 4
        before = run_info_for(store, made_up)  # the run the made-up wrdn gave a retry under schema 3
        watched, announced = sorted(store.due(time.time()), key=lambda r: r.writer_path)
        assert watched.wrdn == b"" and watched.job_id == "job-7"
        assert announced.wrdn == real  # the writer's own message stays: it is what the file's run comes from
        again = requeued_file(store, watched)
        assert again.run == before and again.run.run_name == "run7" and again.run.service_id == "sfi-watch"
        assert (again.path, again.identity, again.source) == (watched.writer_path, watched.file_key, watched.source)
        assert requeued_file(store, announced).run == run_info_for(store, real)
        assert requeued_file(store, announced).run.wrdn_metadata == {"proposal": "p1"}
    finally:
        store.close()
