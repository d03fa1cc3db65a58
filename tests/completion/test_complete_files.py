"""Only complete files: a wrdn comes before kafka-to-nexus has finished its file (issue 18, deliverable 1).

Real HDF5 files, a real writer process that keeps writing after the wrdn, HDF5 file locking off in the
reader (as on NFS/GPFS/Lustre), a real broker and a real `sfi listen`.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scicat_fw_ingest.completion.settle import Quiet, Version
from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.daemon.state import StateStore
from scicat_fw_ingest.ingest import Ingestor
from scicat_fw_ingest.kafka import ensure_topics
from scicat_fw_ingest.simulate import simulate_jobs
from scicat_fw_ingest.simulate._finish import finish_late, parse_late
from scicat_fw_ingest.testing.listener import DEFAULTS_TOML, WRITER_PREFIX, listener, make_jobs, publish, wait_for
from scicat_fw_ingest.testing.nexus_files import write_ess
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

#: A writer that is not done: appends to the file every few ms for ``seconds`` (a separate process, as a writer is).
APPENDER = """
import sys, time
path, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
with open(path, "ab", buffering=0) as fh:
    print("writing", flush=True)
    while time.monotonic() < end:
        fh.write(b"x" * 4096)
        time.sleep(0.002)
"""


def _appender(path: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", APPENDER, str(path), str(seconds)], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"writing\n"
    return proc


def _ingestor(tmp_path: Path, extra: str = "") -> Ingestor:
    cfg_file = tmp_path / "sfi.toml"
    cfg_file.write_text(f'{DEFAULTS_TOML}\n[ingest]\nchecksum = "sha256"\n{extra}\n')
    cfg = load_config(cfg_file, env={})
    return Ingestor(cfg, None, explicit_paths=[str(tmp_path)])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_read_only_file_is_ingested_without_waiting(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_ess(tmp_path / "done.nxs")  # closed and chmod 0440, as kafka-to-nexus >= eed2958d leaves it
    assert Version.of(path.stat()).read_only
    caplog.set_level("DEBUG", logger="sfi.ingest")
    result = _ingestor(tmp_path).ingest(str(path))
    assert result.status == "dry-run", result.error
    assert result.completion is not None
    assert (result.completion.evidence, result.completion.waited, result.completion.reads) == ("read-only", 0.0, 1)
    assert "complete (read-only), no wait" in caplog.text
    assert result.origdatablock is not None and result.origdatablock["dataFileList"][0]["perm"] == "440"


def test_a_writable_file_waits_until_it_settled(tmp_path: Path) -> None:
    path = write_ess(tmp_path / "old-writer.nxs")
    path.chmod(0o644)  # kafka-to-nexus before eed2958d: nothing says it is done
    ingestor = _ingestor(tmp_path, "settle_seconds = 0.4\ncomplete_wait = 10")
    result = ingestor.ingest(str(path))
    assert result.status == "dry-run", result.error
    assert result.completion is not None and result.completion.evidence == "settled"
    assert result.completion.waited >= 0.4
    # "read-only" alone never accepts an older writer's file: it fails, bounded, naming the rule
    ingestor.cfg.ingest.complete_when, ingestor.cfg.ingest.complete_wait = "read-only", 0.3
    refused = ingestor.ingest(str(path))
    assert refused.status == "failed" and refused.retryable
    assert "still writable (mode 644)" in (refused.error or "") and "complete_when" in (refused.error or "")


def test_a_file_modified_during_the_checksum_pass_is_read_again(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    path = write_ess(tmp_path / "late.nxs", events=200_000)  # 0440 already: trusted at once, then caught changing
    caplog.set_level("INFO", logger="sfi.ingest")
    writer = _appender(path, 1.0)
    result = _ingestor(tmp_path, "settle_seconds = 0.3").ingest(str(path))
    assert writer.wait(10) == 0
    assert result.status == "dry-run", result.error
    assert result.completion is not None and result.completion.reads >= 2
    assert "changed while it was read" in caplog.text
    block = result.origdatablock
    assert block is not None
    entry = block["dataFileList"][0]
    assert block["size"] == entry["size"] == path.stat().st_size  # the final file, not the one first read
    assert entry["chk"] == _sha256(path)


def test_a_file_that_never_settles_fails_with_the_reason_within_the_bound(tmp_path: Path) -> None:
    path = write_ess(tmp_path / "forever.nxs")
    path.chmod(0o644)
    writer = _appender(path, 6.0)
    try:
        started = time.monotonic()
        result = _ingestor(tmp_path, "settle_seconds = 0.5\ncomplete_wait = 1.5").ingest(str(path))
        took = time.monotonic() - started
    finally:
        writer.kill()
        writer.wait()
    assert result.status == "failed" and result.retryable and result.file_problem
    assert "still being written: size/mtime changed during the last 0.5 s" in (result.error or "")
    assert "complete_wait" in (result.error or "")
    assert took < 1.5 + 3.0  # the bound, not the writer's 6 s


def test_quiet_rule_restarts_on_change() -> None:
    quiet = Quiet(10, 1, since=0.0)
    assert not quiet.see(10, 1, 5.0) and quiet.quiet_for(5.0) == 5.0
    assert quiet.see(11, 1, 6.0) and quiet.quiet_for(7.0) == 1.0
    assert quiet.see(11, 2, 8.0) and quiet.since == 8.0


def test_finish_late_writes_after_the_fact_then_seals(tmp_path: Path) -> None:
    assert (parse_late("0.5-3").low, parse_late("0.5-3").high, parse_late("2").high) == (0.5, 3.0, 2.0)
    for bad in ("abc", "3-1", "-1"):
        with pytest.raises(ValueError):
            parse_late(bad)
    path = write_ess(tmp_path / "f.nxs")
    before = Version.of(path.stat())
    steps = finish_late(path, 0.3)
    after = Version.of(path.stat())
    assert steps >= 3 and after.read_only and not after.same_file(before)
    path.chmod(0o644)
    finish_late(path, 0.0, final_chmod=False)
    assert not Version.of(path.stat()).read_only


# -- the listener, files finished 0.5-1.5 s after their wrdn, HDF5 locking off -----------------------------------
@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("writer", ["0440", "pre-eed2958d"])
def test_listen_records_the_final_file_of_late_finishing_writers(tmp_path: Path, kafka_config, kafka_bootstrap,
                                                                  topic: str, writer: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    settle = "" if writer == "0440" else "settle_seconds = 1.0\n"
    cfg_path = tmp_path / "sfi.toml"
    cfg_path.write_text(f'{DEFAULTS_TOML}\n[ingest]\nchecksum = "sha256"\ndata_roots = ["{out}"]\n{settle}'
                        "[listen]\nretry_base = 0.2\nretry_max = 1.0\n")
    ensure_topics(kafka_config, [topic])
    with ScicatTestServer() as scicat:
        proc = listener(tmp_path, "l", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                        group=f"g-{topic}", env_extra={"HDF5_USE_FILE_LOCKING": "FALSE"}).start()
        try:  # listening before the writer starts, so that wrdn messages are read while the files are finishing
            wait_for(lambda: "partitions assigned: " in proc.log(), 60, "the listener's partition")
            results = simulate_jobs(kafka_config, 10, output_dir=out, control_topic=topic, pool_topic=f"{topic}_pool",
                                    status_topic=f"{topic}_status", heartbeats=0, rng_seed=7,
                                    late=parse_late("0.5-1.5"), final_chmod=writer == "0440")
            assert all(0.5 <= r.finish_late_s <= 1.5 for r in results)
            wait_for(lambda: sum(map(len, scicat.origdatablocks.values())) >= 10, 90, "10 datablocks")
            time.sleep(0.5)  # a duplicate would show up now
        finally:
            assert proc.terminate() == 0, proc.log()[-3000:]
        log = proc.log()
        blocks = [b for bs in scicat.origdatablocks.values() for b in bs]
        datasets = dict(scicat.datasets)
    assert len(datasets) == 10 and len(blocks) == 10, log[-3000:]
    wrong = []
    for block in blocks:
        entry = block["dataFileList"][0]
        final = out / Path(entry["path"]).name
        if (block["size"], entry["size"], entry["chk"]) != (final.stat().st_size,) * 2 + (_sha256(final),):
            wrong.append(final.name)
    assert wrong == [], f"{len(wrong)} of 10 datablocks do not describe the final file: {wrong}\n{log[-3000:]}"
    if writer != "0440":  # nothing says these are done: each waited its settle time (with 0440 that depends on
        # how soon the listener read each wrdn: without the wait, 10 of 10 were wrong when tried with "at-once")
        assert log.count("complete (settled) after waiting") >= 10, log


def test_produce_test_refuses_a_bad_finish_late(tmp_path: Path, sfi) -> None:
    for bad in ("soon", "3-1"):
        run = sfi("produce-test", "-b", "127.0.0.1:9", "-o", str(tmp_path), "--finish-late", bad)
        assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
        assert run.stderr.strip().splitlines()[-1].startswith("sfi: error: --finish-late"), run.stderr
    run = sfi("produce-test", "-b", "127.0.0.1:9", "-o", str(tmp_path), "--writer", "supermusr",
              "--archive-dir", str(tmp_path), "--no-final-chmod")
    assert run.returncode == 2 and "only with --writer kafka-to-nexus" in run.stderr, run.stderr


def test_ingest_file_waits_for_a_file_still_being_written(tmp_path: Path, sfi) -> None:
    """The CLI applies the rule too: a writable file being appended to fails with the reason, exit 1."""
    path = write_ess(tmp_path / "busy.nxs")
    path.chmod(0o644)
    (tmp_path / "sfi.toml").write_text(f"{DEFAULTS_TOML}\n[ingest]\nsettle_seconds = 0.3\ncomplete_wait = 1.0\n")
    writer = _appender(path, 8.0)
    try:
        run = sfi("ingest-file", "--dry-run", "--json", "-c", str(tmp_path / "sfi.toml"), str(path))
    finally:
        writer.kill()
        writer.wait()
    assert run.returncode == 1, run.stderr
    assert "still being written: size/mtime changed during the last 0.3 s" in run.stdout + run.stderr
    done = sfi("ingest-file", "--dry-run", "--json", "--complete-when", "settled", "-c", str(tmp_path / "sfi.toml"),
               str(path))
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["completion"]["evidence"] == "settled" and record["completion"]["waited_s"] >= 0.3
    assert record["origdatablock"]["size"] == path.stat().st_size


@pytest.mark.kafka
@pytest.mark.slow
def test_listen_stops_at_once_while_a_file_settles(tmp_path: Path, kafka_config, kafka_bootstrap, topic: str) -> None:
    """SIGTERM ends a settle wait at once (here: a file written for 90 s, complete_wait 60 s); the file is queued."""
    data_dir = tmp_path / "data"
    [job] = make_jobs(data_dir, 1, topic=topic)
    path = data_dir / job.filename
    path.chmod(0o644)
    cfg_path = tmp_path / "sfi.toml"
    cfg_path.write_text(f'{DEFAULTS_TOML}\n[ingest]\nchecksum = "none"\n'
                        f'path_map = [["{WRITER_PREFIX}", "{data_dir}"]]\n'
                        "settle_seconds = 0.5\ncomplete_wait = 60\n[listen]\nretry_base = 60\n")
    writer = _appender(path, 90.0)
    try:
        with ScicatTestServer() as scicat:
            proc = listener(tmp_path, "s", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                            group=f"g-{topic}", extra=["--processes", "0", "-v"]).start()
            try:
                publish(kafka_config, [job])
                wait_for(lambda: "not complete yet" in proc.log(), 60, "the file's settle wait")
            finally:
                assert proc.terminate(timeout=20) == 0, proc.log()[-3000:]  # not the 60 s of complete_wait
            assert scicat.origdatablocks == {}
    finally:
        writer.kill()
        writer.wait()
    [record] = StateStore(tmp_path / "state-s").files()
    assert record.status == "queued" and "sfi is stopping" in (record.error or ""), record


def test_the_completeness_settings_are_checked(tmp_path: Path) -> None:
    from scicat_fw_ingest.config_check import problems
    from scicat_fw_ingest.errors import ConfigError

    cfg_file = tmp_path / "sfi.toml"
    cfg_file.write_text("[ingest]\nsettle_seconds = 30\ncomplete_wait = 20\n")
    found = "\n".join(problems(load_config(cfg_file, env={})))
    assert "[ingest] complete_wait (20) must exceed settle_seconds (30): no file could settle before the deadline" \
        in found
    cfg_file.write_text("[ingest]\nsettle_seconds = -1\ncomplete_wait = 0\n")
    found = "\n".join(problems(load_config(cfg_file, env={})))
    assert "[ingest] settle_seconds: -1.0 must be >= 0" in found and "[ingest] complete_wait: 0.0 must be > 0" in found
    cfg_file.write_text('[ingest]\ncomplete_when = "when-done"\n')
    with pytest.raises(ConfigError, match="complete_when: must be one of read-only-or-settled, read-only, settled"):
        load_config(cfg_file, env={})
    assert load_config(None, env={"SFI_INGEST_COMPLETE_WHEN": "settled"}).ingest.complete_when == "settled"


@pytest.mark.kafka
def test_produce_test_finishes_files_after_their_wrdn(tmp_path: Path, kafka_bootstrap: str, topic: str, sfi) -> None:
    for flags, sealed in ((["--finish-late", "0.3"], True), (["--finish-late", "0.2-0.4", "--no-final-chmod"], False)):
        out = tmp_path / ("sealed" if sealed else "writable")
        out.mkdir()
        run = sfi("produce-test", "-b", kafka_bootstrap, "-o", str(out), "-n", "2", "--heartbeats", "0", "--json",
                  "--pool-topic", f"{topic}_pool", "--control-topic", topic, "--status-topic", f"{topic}_status",
                  *flags)
        assert run.returncode == 0, run.stderr
        jobs = [json.loads(line) for line in run.stdout.splitlines()]
        assert len(jobs) == 2 and all(0.2 <= j["finish_late_s"] <= 0.4 for j in jobs)
        for job in jobs:  # the command returns once every file is finished
            assert Version.of(Path(job["file"]).stat()).read_only is sealed
