"""`sfi watch` file identity: a file is one version (size, mtime) of a path, so a new file at a used path is
ingested again, an untouched one never; replacements are seen at once with inotify, at the deep pass when
polling; records of older sfi (under the bare path) still count as known."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from scicat_fw_ingest.catalogue import CatalogueDir
from scicat_fw_ingest.daemon.state import FileRecord, StateStore
from scicat_fw_ingest.daemon.watch import WatchOptions, Watcher, watched_identity
from scicat_fw_ingest.ingest import Ingestor
from scicat_fw_ingest.simulate import SimulatedJob
from scicat_fw_ingest.testing.listener import wait_for, write_ess_file
from scicat_fw_ingest.testing.watcher import Clock, muon_file, record_at, run_watcher, watch_config, watcher


def recorded(state: StateStore, path: str | Path) -> FileRecord:
    """The newest record of a watched path; a path without one fails the test here."""
    record = record_at(state, path)
    assert record is not None, f"no record for {path}"
    return record


def status_at(state: StateStore, path: str | Path) -> str | None:
    """The status of a watched path's newest record, None before it has one (for ``wait_for``)."""
    record = record_at(state, path)
    return record.status if record is not None else None


def ess_file(path: Path) -> str:
    """A kafka-to-nexus style file with a fresh uuid, its pid: two files at one path are two datasets."""
    job = SimulatedJob(filename=path.name, run_name=path.stem)
    write_ess_file(path, job)
    return job.job_id


def replace(path: Path, staging: Path) -> str:
    """Put a new file (a new run) at ``path`` as a writer or a copy tool does: written aside, renamed over it."""
    staging.mkdir(exist_ok=True)
    job = ess_file(staging / path.name)
    os.replace(staging / path.name, path)
    return job


def pids(catalogue: Path) -> list[str]:
    return sorted(json.loads(p.read_text())["pid"] for p in catalogue.glob("*/dataset.json"))


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "polling"])
def test_a_replaced_file_settles_again_at_once_with_inotify_at_the_deep_pass_when_polling(
        tmp_path: Path, inotify: bool) -> None:
    watched = tmp_path / "w"
    watched.mkdir()
    a = str(muon_file(watched / "a.nxs", size_mb=0.01))
    b = str(muon_file(watched / "b.nxs", size_mb=0.01, run_name="MUSR00000002"))
    calls: list[str] = []
    clock = Clock()
    w = watcher(watched, clock, inotify=inotify, calls=calls, rescan=60.0)
    try:
        if inotify and w.mode != "inotify":
            pytest.skip("no inotify on this platform")
        clock.now += 5
        assert sorted(w.poll()) == [a, b]
        w.take(a)
        w.take(b)
        muon_file(tmp_path / "a.nxs", size_mb=0.03, run_name="MUSR00000003")  # another run, another size
        os.replace(tmp_path / "a.nxs", a)
        new = os.stat(a)
        clock.now += 5
        time.sleep(0.05)
        assert w.poll() == []  # a new version settles again: not handed out the moment it appears
        if inotify:
            assert w.is_pending(a) and w.scans == 1  # the event alone made it a candidate, no scan
        else:
            assert not w.is_pending(a)  # the frequent scans do not stat handled files...
            clock.now += 60
            assert w.poll() == []
            assert w.is_pending(a)  # ...the deep pass (every rescan interval) does
        clock.now += 5
        assert w.poll() == [a]
        assert w.version(a) == (new.st_size, new.st_mtime_ns)  # the version that settled
        w.take(a)
        clock.now += 60  # another deep pass: the untouched b and the new a are the handled versions
        assert w.poll() == []
        assert sorted(calls) == [a, b]  # the store was asked once per name, at first sight
        assert w.handled() == 2
        os.remove(b)
        clock.now += 1
        time.sleep(0.05)
        w.poll()
        if not inotify:
            assert w.handled() == 2  # polling learns of a deletion only at the deep pass
            clock.now += 60
            w.poll()
        assert w.handled() == 1  # a deleted handled file is forgotten: memory follows the files present
    finally:
        w.close()


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "polling"])
def test_a_file_replaced_at_its_path_is_ingested_again_an_untouched_one_never(tmp_path: Path,
                                                                                inotify: bool) -> None:
    cfg = watch_config(tmp_path)
    archive, catalogue = tmp_path / "archive", tmp_path / "catalogue"
    archive.mkdir()
    run_a, run_b = archive / "run_a.nxs", archive / "run_b.nxs"
    first_a, only_b = ess_file(run_a), ess_file(run_b)
    state = StateStore(tmp_path / "state")
    options = WatchOptions([str(archive)], quiet_period=0.2, poll_interval=0.1, workers=2, use_inotify=inotify,
                           rescan_interval=300.0 if inotify else 0.5)
    w = Watcher(cfg, options, ingestor=Ingestor(cfg, CatalogueDir(str(catalogue))), state=state)
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(state.files()) == 2, 30, "both files ingested")
        first_key = recorded(state, run_a).file_key
        second_a = replace(run_a, tmp_path / "staging")  # same name, a new run
        wait_for(lambda: len(state.files()) == 3, 30, "the new file at run_a.nxs ingested")
        time.sleep(1.2 if inotify else 1.5)  # a few deep passes when polling: nothing more may happen
    finally:
        w.stop()
        thread.join(30)
    assert w.folder.mode == ("inotify" if inotify else "polling")
    assert w.outcomes == {"created": 3}
    at_a = state.files_at(str(run_a))
    assert [r.pid for r in at_a] == [first_a, second_a]
    st = os.stat(run_a)
    assert at_a[1].file_key == watched_identity(str(run_a), st.st_size, st.st_mtime_ns) != first_key
    assert {r.writer_path for r in state.files()} == {str(run_a), str(run_b)}  # what `sfi failures` shows
    assert pids(catalogue) == sorted([first_a, second_a, only_b])

    ess_file(archive / "run_c.nxs")  # arrives while nobody watches
    again = run_watcher(cfg, options, state, CatalogueDir(str(catalogue)), lambda: len(state.files()) == 4,
                        linger=1.0)
    assert again.outcomes == {"created": 1}  # run_c only: run_b untouched and run_a's new version are known
    assert len(state.files()) == 4 and len(pids(catalogue)) == 4
    state.close()


def test_a_record_under_the_bare_path_from_an_older_sfi_counts_as_known(tmp_path: Path) -> None:
    """State written before file identities keyed a watched file by its path alone: not ingested again."""
    cfg = watch_config(tmp_path)
    archive, catalogue = tmp_path / "archive", tmp_path / "catalogue"
    archive.mkdir()
    old, new = archive / "old.nxs", archive / "new.nxs"
    old_job, new_job = ess_file(old), ess_file(new)
    state = StateStore(tmp_path / "state")
    state.record_file(str(old), job_id=None, writer_path=str(old), status="created", pid=old_job,
                      source=f"watch:{archive}", wrdn=b"")  # what the previous `sfi watch` wrote
    options = WatchOptions([str(archive)], quiet_period=0.2, poll_interval=0.1, workers=2)
    w = Watcher(cfg, options, ingestor=Ingestor(cfg, CatalogueDir(str(catalogue))), state=state)
    assert w.ledger.known(str(old)) and not w.ledger.known(str(new))
    thread = threading.Thread(target=w.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: record_at(state, new) is not None, 30, "the new file ingested")
        time.sleep(0.5)
        assert pids(catalogue) == [new_job]  # the old file was not ingested again
        # an upgrade does not pin the path: a new file written over the old one is still a new file
        replaced = replace(old, tmp_path / "staging")
        wait_for(lambda: len(state.files_at(str(old))) == 2, 30, "the new version of old.nxs")
    finally:
        w.stop()
        thread.join(30)
    assert w.outcomes == {"created": 2}
    assert [r.file_key == str(old) for r in state.files_at(str(old))] == [True, False]
    assert pids(catalogue) == sorted([new_job, replaced])
    state.close()


def test_sfi_failures_and_retry_find_a_watched_file_by_its_path(sfi, tmp_path: Path) -> None:
    cfg = watch_config(tmp_path)
    archive = tmp_path / "archive"
    archive.mkdir()
    broken = archive / "broken.nxs"
    broken.write_bytes(b"not HDF5, never will be")
    state = StateStore(tmp_path / "state")
    options = WatchOptions([str(archive)], quiet_period=0.2, poll_interval=0.1, retry_base=0.2, retry_max=0.4)
    sink = CatalogueDir(str(tmp_path / "catalogue"))
    run_watcher(cfg, options, state, sink, lambda: record_at(state, broken) is not None)
    record = recorded(state, broken)
    assert record.status == "failed" and record.file_key != str(broken)  # keyed by its identity

    listed = sfi("failures", "--json", "--state-dir", str(tmp_path / "state"))
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["file"] for line in listed.stdout.splitlines()] == [str(broken)]
    requeued = sfi("retry", str(broken), "--state-dir", str(tmp_path / "state"))
    assert requeued.returncode == 0, requeued.stderr
    assert "1 file(s) queued" in requeued.stdout
    assert recorded(state, broken).status == "queued"

    # the watcher retries it under the key it was queued with, opening the path (not the key)
    run_watcher(cfg, options, state, sink, lambda: status_at(state, broken) == "failed", linger=0.3)
    (again,) = state.files()
    assert again.file_key == record.file_key and again.attempts == record.attempts + 1
    assert "HDF5" in (again.error or "")
    state.close()
