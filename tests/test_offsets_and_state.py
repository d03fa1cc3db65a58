"""The at-least-once bookkeeping (commit points) and the listener's durable state store."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from scicat_fw_ingest._offsets import OffsetTracker
from scicat_fw_ingest.state import QUEUED, StateError, StateStore

TP = ("control", 0)


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
    record = again.get_file("/w/a.nxs")
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
