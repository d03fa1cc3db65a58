"""One log format for every line: escaped control characters, scrubbed secrets, worker records, broker problems."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from scicat_fw_ingest._logging import _JsonFormatter, _TextFormatter, level_from_flags, register_secret, scrub
from scicat_fw_ingest.testing.listener import config_file, listener, make_jobs, publish, wait_for
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer


def formatted(formatter: logging.Formatter, msg: str, *args: object) -> str:
    record = logging.LogRecord("sfi.listen", logging.WARNING, __file__, 1, msg, args, None)
    return formatter.format(record)


def test_a_newline_in_a_file_name_cannot_forge_a_log_line() -> None:
    name = "/data/run.nxs\n2026-11-22 10:00:00 INFO    created /data/fake.nxs -> pid x\x1b[2J"
    text = formatted(_TextFormatter(), "failed %s: %s", name, "not HDF5")
    assert "\n" not in text and "\x1b" not in text
    assert "run.nxs\\n2026-11-22" in text and "\\x1b[2J" in text
    as_json = json.loads(formatted(_JsonFormatter(), "failed %s", name))
    assert "\n" not in as_json["msg"] and as_json["level"] == "warning"


def test_secrets_and_url_credentials_are_scrubbed_from_log_lines() -> None:
    register_secret("p4ss:w0rd/+x")
    text = formatted(_TextFormatter(), "login to %s refused: server said %s and %s",
                     "https://ingestor:hunter22@scicat.example/api/v3",
                     '{"error":"bad token p4ss%3Aw0rd%2F%2Bx"}', "access_token=abcdefghijklmnopqrstuvwx")
    assert "hunter22" not in text and "p4ss" not in text and "abcdefghijklmnop" not in text
    assert "https://ingestor:***@scicat.example" in text and text.count("***") == 3
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJlLXZhbHVl"
    assert jwt not in scrub(f"answer: {{'access_token': '{jwt}'}}")
    digest = "a3" * 32
    kept = f"sha256 {digest} of pid 20.500.12269/{'ab' * 20}"
    assert scrub(kept) == kept


def test_verbosity_flags() -> None:
    assert level_from_flags() == logging.INFO
    assert level_from_flags(verbose=1) == logging.DEBUG
    assert level_from_flags(quiet=1) == logging.WARNING and level_from_flags(quiet=2) == logging.ERROR
    assert level_from_flags(verbose=1, level="error") == logging.ERROR


@pytest.mark.slow
def test_unreachable_broker_is_logged_within_15_s_as_json(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFI_")}
    env["SFI_INGEST_DATA_ROOTS"] = str(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "listen", "-b", "127.0.0.1:1", "--topic", "t",
                             "--state-dir", str(tmp_path / "state"), "--catalogue-dir", str(tmp_path / "cat"),
                             "--processes", "0", "--log-format", "json", "-q"],
                            env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    stderr = proc.stderr
    assert stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(stderr.readline, "")), daemon=True)
    reader.start()
    try:  # the acceptance bound: the operator hears of it within 15 s
        wait_for(lambda: any("unreachable" in line for line in lines), 15, "an error about the broker")
    finally:
        proc.terminate()
        proc.wait(30)
        reader.join(5)
    errors = [json.loads(line) for line in lines]  # every line is JSON
    assert any(e["level"] == "error" and "127.0.0.1:1" in e["msg"] and "unreachable" in e["msg"] for e in errors), lines
    assert not any(e["level"] == "info" for e in errors)  # -q: warnings and errors only


@pytest.mark.kafka
@pytest.mark.slow
def test_json_log_of_a_run_with_scicat_retries_and_worker_processes(tmp_path, kafka_config, kafka_bootstrap,
                                                                    topic) -> None:
    data_dir = tmp_path / "data"
    jobs = make_jobs(data_dir, 3, topic=topic)
    # a file name with a newline: must not break the one-JSON-object-per-line log
    odd = data_dir / "odd\nname.nxs"
    (data_dir / jobs[2].filename).rename(odd)
    jobs[2].written_path = "/writer/out/odd\nname.nxs"
    with ScicatTestServer() as scicat:
        scicat.fail_next(4, 503)
        publish(kafka_config, jobs)
        proc = listener(tmp_path, "j", bootstrap=kafka_bootstrap, scicat=scicat,
                        cfg_path=config_file(tmp_path, data_dir),
                        topic=topic, group=f"g-{topic}", extra=["--log-format", "json", "--processes", "2", "-v"],
                        env_extra={"SFI_SCICAT_MAX_ATTEMPTS": "3"}).start()
        try:
            wait_for(lambda: len(scicat.origdatablocks) == 3, 90, "3 datasets after SciCat's 503s")
        finally:
            assert proc.terminate() == 0, proc.log()[-3000:]
    lines = proc.log().splitlines()
    entries = [json.loads(line) for line in lines]  # every line parses
    assert any("retrying" in e["msg"] for e in entries), lines  # the client's retries, logged in a worker process
    assert any(e["level"] == "debug" for e in entries)  # -v
    assert any("odd\\nname.nxs" in e["msg"] for e in entries)
    assert scicat.token not in proc.log()


def test_broker_problems_are_logged_at_once_then_every_few_minutes(caplog) -> None:
    from confluent_kafka import KafkaError

    from scicat_fw_ingest.daemon.health import BrokerProblems

    problems = BrokerProblems("127.0.0.1:1", repeat=0.2)
    with caplog.at_level(logging.INFO, logger="sfi.listen"):
        for _ in range(20):  # librdkafka repeats the error on every reconnect attempt
            problems(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
        assert [r.levelname for r in caplog.records] == ["ERROR"]
        assert "127.0.0.1:1 unreachable" in caplog.records[0].getMessage()

        def reminded() -> bool:
            problems(KafkaError(KafkaError._ALL_BROKERS_DOWN, "all down"))
            return len(caplog.records) == 2

        wait_for(reminded, 5, "the reminder while the problem lasts")
        problems(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED, "bad password"))
        problems.ok()
        assert problems.active is False
        assert "reachable again" in caplog.records[-1].getMessage()
        problems(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED, "bad password"))
        assert "refuses authentication" in caplog.records[-1].getMessage()


def test_a_huge_message_makes_a_bounded_line_that_says_it_was_cut() -> None:
    huge = "x" * 1_000_000 + "tail"
    text = formatted(_TextFormatter(), "run start of job %s: %s", "job-1", huge)
    assert len(text.encode()) < 8192 and "[cut: 1000028 chars, sha256 " in text and "tail" not in text
    line = formatted(_JsonFormatter(), "bad %s", "\x01" * 100_000)  # escapes grow: still bounded after them
    assert len(line.encode()) < 8192 and json.loads(line)["msg"].endswith("]")
    try:
        raise ValueError("y" * 500_000)
    except ValueError:
        record = logging.LogRecord("sfi.listen", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert len(_JsonFormatter().format(record).encode()) < 8192
    assert all(len(part.encode()) < 8192 for part in _TextFormatter().format(record).splitlines())
