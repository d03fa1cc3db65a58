"""`sfi decode` as an operator runs it: files, stdin, hex and a real topic; exit codes; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streaming_data_types import serialise_pl72

from scicat_fw_ingest.kafka import ensure_topics, make_producer
from scicat_fw_ingest.simulate import SimulatedJob, job_messages
from scicat_fw_ingest.testing.message_samples import SAMPLES, other_schemas

JOB_ORDER = ["pl72", "answ", "x5f2", "6s4t", "answ", "wrdn"]


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("schema", ["pl72", "6s4t", "answ", "x5f2", "wrdn", "f144", "ev44"])
def test_each_input_kind_gives_the_same_json(schema: str, tmp_path: Path, sfi) -> None:
    data, expected = SAMPLES[schema]
    path = tmp_path / f"{schema}.bin"
    path.write_bytes(data)
    want = {"schema": schema, **expected}
    from_file = sfi("decode", "--json", str(path))
    from_stdin = sfi("decode", "--json", "-", input=data)
    from_hex = sfi("decode", "--json", "--hex", data.hex())
    for run in (from_file, from_stdin, from_hex):
        assert run.returncode == 0, run.stderr
        assert lines(run.stdout) == [want]
        assert run.stderr == ""


def test_readable_rendering_names_schema_and_fields(tmp_path: Path, sfi) -> None:
    path = tmp_path / "pl72.bin"
    path.write_bytes(SAMPLES["pl72"][0])
    run = sfi("decode", str(path))
    assert run.returncode == 0
    assert "pl72 run start" in run.stdout
    assert "/data/f.nxs" in run.stdout and "1 groups" in run.stdout


@pytest.mark.parametrize(
    "payload, fragment",
    [
        (b"", "too short: 0 bytes"),
        (b"abc", "too short: 3 bytes"),
        (bytes(range(7, 47)), "no schema id"),
        (SAMPLES["pl72"][0][:30], "schema 'pl72': corrupt body"),
        (b"\x00" * 4 + b"zzzz" + b"\x00" * 8, "schema 'zzzz': unknown schema id"),
        (serialise_pl72("j", "f.nxs", nexus_structure="{oops"), "pl72 nexus_structure: not valid JSON"),
    ],
    ids=["empty", "3-bytes", "random", "truncated", "unknown-id", "bad-nexus-json"],
)
def test_bad_input_exit_1_and_one_line(payload: bytes, fragment: str, tmp_path: Path, sfi) -> None:
    path = tmp_path / "bad.bin"
    path.write_bytes(payload)
    run = sfi("decode", "--json", str(path))
    assert run.returncode == 1
    err = run.stderr.strip().splitlines()
    assert len(err) == 1 and fragment in err[0] and str(path) in err[0]
    assert "Traceback" not in run.stderr


def test_good_inputs_still_printed_when_one_fails(tmp_path: Path, sfi) -> None:
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(SAMPLES["wrdn"][0])
    bad.write_bytes(b"abc")
    run = sfi("decode", "--json", str(bad), str(good), str(tmp_path / "missing.bin"))
    assert run.returncode == 1
    assert [m["schema"] for m in lines(run.stdout)] == ["wrdn"]
    assert len(run.stderr.strip().splitlines()) == 2 and "missing.bin: cannot read" in run.stderr


def test_expect_rejects_another_schema(tmp_path: Path, sfi) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(SAMPLES["pl72"][0])
    run = sfi("decode", "--expect", "wrdn", str(path))
    assert run.returncode == 1 and "expected a 'wrdn'" in run.stderr


@pytest.mark.parametrize("args", [[], ["a.bin", "--hex", "00"], ["--offset", "3", "a.bin"],
                                  ["--topic", "t", "--last", "2", "--from-beginning"]])
def test_usage_errors_exit_2(args: list[str], sfi) -> None:
    run = sfi("decode", *args)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr


def _fast_path_cases(tmp_path: Path) -> list[list[str]]:
    """Command lines ``_decode_fast`` takes itself, and some it must hand to typer."""
    paths = []
    for schema in ("pl72", "x5f2", "ev44"):
        path = tmp_path / f"{schema}.bin"
        path.write_bytes(SAMPLES[schema][0])
        paths.append(str(path))
    bad = tmp_path / "bad.bin"
    bad.write_bytes(serialise_pl72("j", "f.nxs", nexus_structure="{oops"))
    missing = str(tmp_path / "missing.bin")
    return [
        ["--json", *paths], [*paths], ["--full", paths[0]], ["--json", "--expect", "x5f2", *paths],
        ["--expect=pl72", paths[0]], ["--json", str(bad), missing, paths[1]], ["--hex", SAMPLES["wrdn"][0].hex()],
        ["--hex=zz"], ["--json", "-"],
        # typer's: usage errors and options the fast path does not read
        [], ["--expect"], [paths[0], "--hex", "00"], ["-", "-"], ["--bogus", paths[0]], ["--help"],
        ["-c", missing, paths[0]], ["--expect", "pl72", "--expect", "x5f2", paths[0]],
    ]


def test_the_fast_path_prints_exactly_what_typer_prints(tmp_path: Path, sfi) -> None:
    """``sfi decode`` on local inputs runs without typer (start-up); it must not differ in any output."""
    from scicat_fw_ingest.cli._decode_fast import NO_FAST_PATH, parse

    stdin = SAMPLES["answ"][0]
    taken = 0
    for args in _fast_path_cases(tmp_path):
        fast = sfi("decode", *args, input=stdin, env={"COLUMNS": "100"})
        slow = sfi("decode", *args, input=stdin, env={"COLUMNS": "100", NO_FAST_PATH: "1"})
        assert (fast.returncode, fast.stdout, fast.stderr) == (slow.returncode, slow.stdout, slow.stderr), args
        taken += parse(args) is not None
    assert taken == 9


def test_the_fast_path_imports_neither_typer_nor_rich_for_json(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "m.bin"
    path.write_bytes(SAMPLES["wrdn"][0])
    code = ("import sys; from scicat_fw_ingest.cli import main\n"
            "try:\n    main(['decode', '--json', sys.argv[1]])\n"
            "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "print(sorted(m for m in ('typer', 'rich', 'click', 'scicat_fw_ingest.config') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _publish_job(kafka_config, topic: str) -> SimulatedJob:
    job = SimulatedJob(filename="/data/run1.nxs", control_topic=topic, pool_topic=topic,
                       metadata='{"proposal_id": "p1"}')
    ensure_topics(kafka_config, [topic])
    producer = make_producer(kafka_config)
    for _, value in job_messages(job)[1:]:  # the control topic's view of one job
        producer.produce(topic, value)
    assert producer.flush(10) == 0
    return job


@pytest.mark.kafka
def test_topic_from_beginning_gives_the_job_in_order(kafka_config, kafka_bootstrap, topic, sfi) -> None:
    job = _publish_job(kafka_config, topic)
    run = sfi("decode", "--json", "-b", kafka_bootstrap, "--topic", topic, "--from-beginning")
    assert run.returncode == 0, run.stderr
    got = lines(run.stdout)
    assert [m["schema"] for m in got] == JOB_ORDER
    assert [m["offset"] for m in got] == list(range(6))
    assert all(m["topic"] == topic and m["partition"] == 0 and m["timestamp"].endswith("Z") for m in got)
    assert got[0]["job_id"] == job.job_id and got[-1]["file_name"] == "/data/run1.nxs"
    assert got[-1]["metadata"] == {"proposal_id": "p1"}


@pytest.mark.kafka
def test_every_sample_schema_round_trips_through_a_topic(kafka_config, kafka_bootstrap, topic, sfi) -> None:
    ensure_topics(kafka_config, [topic])
    producer = make_producer(kafka_config)
    schemas = sorted(SAMPLES)
    for schema in schemas:
        producer.produce(topic, SAMPLES[schema][0])
    assert producer.flush(10) == 0
    run = sfi("decode", "--json", "-b", kafka_bootstrap, "--topic", topic)
    assert run.returncode == 0, run.stderr
    got = lines(run.stdout)
    meta = ("topic", "partition", "offset", "timestamp", "key", "headers")
    assert [{k: v for k, v in m.items() if k not in meta} for m in got] == [
        {"schema": s, **SAMPLES[s][1]} for s in schemas]


@pytest.mark.kafka
def test_topic_positions_and_count(kafka_config, kafka_bootstrap, topic, sfi) -> None:
    _publish_job(kafka_config, topic)
    base = ("decode", "--json", "-b", kafka_bootstrap, "--topic", topic)
    assert [m["offset"] for m in lines(sfi(*base, "--offset", "3").stdout)] == [3, 4, 5]
    assert [m["schema"] for m in lines(sfi(*base, "--count", "2").stdout)] == ["pl72", "answ"]
    env = {"SFI_KAFKA_BOOTSTRAP": kafka_bootstrap}  # the broker from the environment works the same
    assert len(lines(sfi("decode", "--json", "--topic", topic, "--partition", "0", env=env).stdout)) == 6


@pytest.mark.kafka
def test_topic_bad_message_is_reported_with_its_offset(kafka_config, kafka_bootstrap, topic, sfi) -> None:
    ensure_topics(kafka_config, [topic])
    producer = make_producer(kafka_config)
    producer.produce(topic, SAMPLES["wrdn"][0])
    producer.produce(topic, b"garbage")
    producer.produce(topic, SAMPLES["x5f2"][0])
    producer.flush(10)
    run = sfi("decode", "--json", "-b", kafka_bootstrap, "--topic", topic)
    assert run.returncode == 1
    assert [m["schema"] for m in lines(run.stdout)] == ["wrdn", "x5f2"]
    assert f"{topic}/0@1: message: too short: 7 bytes" in run.stderr


@pytest.mark.kafka
def test_missing_topic_and_missing_broker_are_one_line(kafka_bootstrap, sfi) -> None:
    run = sfi("decode", "-b", kafka_bootstrap, "--topic", "no_such_topic_here")
    assert run.returncode == 1 and "does not exist" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    run = sfi("decode", "--topic", "x")
    assert run.returncode == 1 and "no Kafka broker given" in run.stderr


def _produce(kafka_config, items: list[tuple[str, bytes]], **kw) -> None:
    ensure_topics(kafka_config, sorted({t for t, _ in items}))
    producer = make_producer(kafka_config)
    for where, value in items:
        producer.produce(where, value, **kw)
    assert producer.flush(10) == 0


@pytest.mark.kafka
def test_acceptance_da00_from_a_topic_holds_its_data_values(kafka_config, kafka_bootstrap, topic, sfi) -> None:
    _produce(kafka_config, [(topic, other_schemas()["da00"])])
    run = sfi("decode", "--json", "-b", kafka_bootstrap, "-t", topic)
    assert run.returncode == 0, run.stderr
    (got,) = lines(run.stdout)
    counts = got["data"][0]
    assert (counts["name"], counts["unit"], counts["axes"], counts["shape"]) == ("counts", "counts", ["tof"], [20])
    assert counts["data"] == list(range(20))  # --json is lossless: whole arrays


@pytest.mark.kafka
def test_several_topics_regex_keys_and_headers(kafka_config, kafka_bootstrap, topic, sfi) -> None:
    a, b, c = f"{topic}_a", f"{topic}_b", f"{topic}_other"
    ensure_topics(kafka_config, [a, b, c])
    producer = make_producer(kafka_config)
    producer.produce(a, SAMPLES["wrdn"][0], key=b"job-1", headers=[("origin", b"writer-1"), ("bin", b"\xff")])
    producer.produce(b, SAMPLES["x5f2"][0])
    producer.produce(c, SAMPLES["pl72"][0])
    assert producer.flush(10) == 0
    both = lines(sfi("decode", "--json", "-b", kafka_bootstrap, "-t", a, "-t", b).stdout)
    assert sorted((m["topic"], m["schema"]) for m in both) == [(a, "wrdn"), (b, "x5f2")]
    wrdn = next(m for m in both if m["topic"] == a)
    assert wrdn["key"] == "job-1" and wrdn["headers"] == [["origin", "writer-1"], ["bin", {"base64": "/w=="}]]
    assert next(m for m in both if m["topic"] == b)["key"] is None
    matched = lines(sfi("decode", "--json", "-b", kafka_bootstrap, "-t", f"^{topic}_[ab]$").stdout)
    assert sorted(m["topic"] for m in matched) == [a, b]
    run = sfi("decode", "-b", kafka_bootstrap, "-t", f"^{topic}_nothing$")
    assert run.returncode == 1 and "no topic" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.kafka
def test_from_time_skips_older_messages(kafka_config, kafka_bootstrap, topic, sfi) -> None:
    import time

    now_ms = int(time.time() * 1000)
    _produce(kafka_config, [(topic, SAMPLES["pl72"][0])], timestamp=now_ms - 3_600_000)
    _produce(kafka_config, [(topic, SAMPLES["wrdn"][0])], timestamp=now_ms)
    base = ("decode", "--json", "-b", kafka_bootstrap, "-t", topic)
    assert [m["schema"] for m in lines(sfi(*base, "--from-time", "30m").stdout)] == ["wrdn"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ms / 1000 - 7200))
    assert [m["schema"] for m in lines(sfi(*base, "--from-time", iso).stdout)] == ["pl72", "wrdn"]
    bad = sfi(*base, "--from-time", "yesterday")
    assert bad.returncode == 2 and "yesterday" in bad.stderr


@pytest.mark.kafka
def test_last_n_counts_real_messages(kafka_config, kafka_bootstrap, topic, sfi) -> None:
    job = _publish_job(kafka_config, topic)  # six messages in one batch
    got = lines(sfi("decode", "--json", "-b", kafka_bootstrap, "-t", topic, "--last", "2").stdout)
    assert [m["schema"] for m in got] == ["answ", "wrdn"] and got[-1]["job_id"] == job.job_id
    assert len(lines(sfi("decode", "--json", "-b", kafka_bootstrap, "-t", topic, "--last", "50").stdout)) == 6
