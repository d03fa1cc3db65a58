"""The operations HTTP server (/health, /metrics) over real sockets, and the Prometheus text the registry renders."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from scicat_fw_ingest.daemon.metrics import LISTEN_METRICS, Metrics, escape_label_value
from scicat_fw_ingest.daemon.ops_http import CheckResult, OpsServer, OpsServerError
from scicat_fw_ingest.errors import KafkaError


def get(url: str, method: str = "GET") -> tuple[int, str, str]:
    """(status, content type, body) of one real HTTP request; error statuses are answers too."""
    request = urllib.request.Request(url, method=method, data=b"{}" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_exposition(text: str) -> tuple[dict[str, tuple[str, str]], dict[tuple[str, frozenset], float]]:
    """A strict reader of the text format: ({name: (type, help)}, {(name, labels): value})."""
    assert text.endswith("\n")
    meta: dict[str, list[str]] = {}
    samples: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            meta.setdefault(name, ["", ""])[1] = help_text.replace("\\n", "\n").replace("\\\\", "\\")
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert name in meta, f"TYPE before HELP for {name}"
            meta[name][0] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, label_text, value = match.groups()
            assert meta.get(name, ["", ""])[0] in ("counter", "gauge"), f"{name} has no # TYPE before its samples"
            labels = {}
            rest = label_text or ""
            while rest:
                pair = _PAIR.match(rest)
                assert pair, f"bad labels in {line!r}"
                raw = pair.group(2)
                labels[pair.group(1)] = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), raw)
                rest = rest[pair.end():]
            key = (name, frozenset(labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = float(value)
    return {k: (v[0], v[1]) for k, v in meta.items()}, samples


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(LISTEN_METRICS)


@pytest.fixture
def checks() -> dict[str, CheckResult]:
    return {"kafka": (True, "3 brokers"), "scicat": (True, "https://scicat/api/v3"), "state": (True, "wal")}


@pytest.fixture
def server(metrics: Metrics, checks: dict[str, CheckResult]) -> Iterator[OpsServer]:
    with OpsServer(0, health=lambda: checks, metrics=metrics.render) as ops:
        yield ops


# -- /health ------------------------------------------------------------------------------------------

def test_health_ok_is_200_with_every_check(server: OpsServer) -> None:
    assert server.port > 0
    status, content_type, body = get(f"{server.url}/health")
    assert status == 200 and content_type == "application/json"
    assert json.loads(body) == {"status": "ok", "checks": {
        "kafka": {"ok": True, "detail": "3 brokers"}, "scicat": {"ok": True, "detail": "https://scicat/api/v3"},
        "state": {"ok": True, "detail": "wal"}}}


def test_health_failing_check_is_503(server: OpsServer, checks: dict[str, CheckResult]) -> None:
    checks["scicat"] = (False, "cannot connect to scicat:443: Connection refused")
    status, _, body = get(f"{server.url}/health")
    report = json.loads(body)
    assert status == 503 and report["status"] == "fail"
    assert report["checks"]["scicat"] == {"ok": False, "detail": "cannot connect to scicat:443: Connection refused"}
    assert report["checks"]["kafka"]["ok"] is True


def test_health_check_that_raises_fails_alone_without_traceback(server: OpsServer,
                                                                 checks: dict[str, CheckResult]) -> None:
    def kafka() -> tuple[bool, str]:
        raise KafkaError("cannot reach Kafka at b1:9092: timed out")

    def state() -> tuple[bool, str]:
        no_results: dict[str, tuple[bool, str]] = {}
        return no_results["missing"]

    checks["kafka"], checks["state"] = kafka, state
    status, _, body = get(f"{server.url}/health")
    report = json.loads(body)
    assert status == 503 and report["status"] == "fail"
    assert report["checks"]["kafka"] == {"ok": False, "detail": "cannot reach Kafka at b1:9092: timed out"}
    assert report["checks"]["state"] == {"ok": False, "detail": "KeyError: 'missing'"}
    assert report["checks"]["scicat"]["ok"] is True
    assert "Traceback" not in body


def test_health_callable_that_raises_is_503(metrics: Metrics) -> None:
    def broken() -> dict:
        raise RuntimeError("state store closed\nsecond line")

    with OpsServer(0, health=broken, metrics=metrics.render) as ops:
        status, _, body = get(f"{ops.url}/health")
    assert status == 503
    assert json.loads(body) == {"status": "fail", "checks": {
        "health": {"ok": False, "detail": "RuntimeError: state store closed second line"}}}


# -- /metrics, 404, lifecycle ---------------------------------------------------------------------------

def test_metrics_endpoint_serves_the_exposition(server: OpsServer, metrics: Metrics) -> None:
    metrics.inc("sfi_messages_consumed_total", schema="wrdn")
    metrics.inc("sfi_messages_consumed_total", 3, schema="pl72")
    metrics.inc("sfi_datasets_total", outcome="created")
    metrics.set("sfi_consumer_lag", 17, topic="loki_control", partition=0)
    metrics.set("sfi_last_success_timestamp_seconds", 1763720000.25)
    status, content_type, body = get(f"{server.url}/metrics?debug=1")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    meta, samples = parse_exposition(body)
    assert set(meta) == set(LISTEN_METRICS)
    assert meta["sfi_datasets_total"] == ("counter", LISTEN_METRICS["sfi_datasets_total"][1])
    assert meta["sfi_retry_queue_depth"][0] == "gauge"
    assert samples[("sfi_messages_consumed_total", frozenset({("schema", "pl72")}))] == 3
    assert samples[("sfi_messages_consumed_total", frozenset({("schema", "wrdn")}))] == 1
    assert samples[("sfi_consumer_lag", frozenset({("topic", "loki_control"), ("partition", "0")}))] == 17
    assert samples[("sfi_last_success_timestamp_seconds", frozenset())] == 1763720000.25
    assert samples[("sfi_messages_invalid_total", frozenset())] == 0  # unlabelled series exist from the start
    assert not any(name == "sfi_datasets_total" and dict(labels).get("outcome") == "failed"
                   for name, labels in samples)


def test_metrics_callable_that_raises_is_500(checks: dict[str, CheckResult]) -> None:
    def broken() -> str:
        raise ValueError("registry gone")

    with OpsServer(0, health=lambda: checks, metrics=broken) as ops:
        status, _, body = get(f"{ops.url}/metrics")
    assert status == 500 and body == "metrics unavailable: ValueError: registry gone\n"


@pytest.mark.parametrize("path, method", [("/", "GET"), ("/healthz", "GET"), ("/health/x", "GET"),
                                          ("/metrics", "POST"), ("/health", "POST")])
def test_anything_else_is_404(server: OpsServer, path: str, method: str) -> None:
    status, _, _ = get(f"{server.url}{path}", method=method)
    assert status == 404


def test_requests_are_not_logged(server: OpsServer, capfd: pytest.CaptureFixture[str]) -> None:
    for path in ("/health", "/metrics", "/nope"):
        get(f"{server.url}{path}")
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_port_in_use_is_one_clear_error_and_stop_frees_the_port(metrics: Metrics) -> None:
    ops = OpsServer(0, health=dict, metrics=metrics.render).start()
    port = ops.port
    with pytest.raises(OpsServerError, match=rf"^--http-port: cannot listen on 127\.0\.0\.1:{port}: "):
        OpsServer(port, health=dict, metrics=metrics.render).start()
    ops.stop()
    ops.stop()  # idempotent
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with OpsServer(port, health=dict, metrics=metrics.render) as again:  # the same port is free again
        assert again.port == port
        assert get(f"{again.url}/health")[0] == 200  # no checks: healthy


# -- the registry ---------------------------------------------------------------------------------------

def test_label_values_are_escaped_and_read_back() -> None:
    registry = Metrics()
    registry.describe("x_total", "counter", 'help with \\ backslash\nand newline "quotes" stay')
    nasty = 'C:\\data\\"run 1"\nline2 {}=,'
    registry.inc("x_total", 2, path=nasty, plain="ok")
    text = registry.render()
    assert 'path="C:\\\\data\\\\\\"run 1\\"\\nline2 {}=,"' in text
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'
    assert len(text.splitlines()) == 3  # HELP, TYPE, one sample: the newlines are all escaped
    meta, samples = parse_exposition(text)
    assert meta["x_total"] == ("counter", 'help with \\ backslash\nand newline "quotes" stay')
    assert samples == {("x_total", frozenset({("path", nasty), ("plain", "ok")})): 2}


def test_values_render_as_prometheus_numbers() -> None:
    registry = Metrics()
    registry.describe("g", "gauge", "a gauge")
    for value, text in [(3, "3"), (2.5, "2.5"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"),
                        (float("nan"), "NaN"), (-4, "-4")]:
        registry.set("g", value)
        assert registry.render().splitlines()[-1] == f"g {text}"


def test_misuse_is_refused_with_the_metric_named(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="sfi_datasets_totl is not described"):
        metrics.inc("sfi_datasets_totl", outcome="created")
    with pytest.raises(ValueError, match=r"sfi_datasets_total: labels must be \['outcome'\]"):
        metrics.inc("sfi_datasets_total", result="created")
    with pytest.raises(ValueError, match="counter cannot decrease"):
        metrics.inc("sfi_messages_invalid_total", -1)
    with pytest.raises(ValueError, match="only a gauge can be set"):
        metrics.set("sfi_messages_invalid_total", 5)
    with pytest.raises(ValueError, match="not a valid Prometheus name"):
        metrics.describe("bad-name", "counter", "x")
    with pytest.raises(ValueError, match="kind must be"):
        metrics.describe("h", "histogram", "x")
    with pytest.raises(ValueError, match="already described as a counter"):
        metrics.describe("sfi_messages_invalid_total", "gauge", "x")
    assert metrics.get("sfi_messages_invalid_total") == 0


def test_gauges_move_both_ways_and_clear(metrics: Metrics) -> None:
    metrics.inc("sfi_inflight_files", 3)
    metrics.inc("sfi_inflight_files", -1)
    assert metrics.get("sfi_inflight_files") == 2
    metrics.set("sfi_consumer_lag", 5, topic="a", partition=1)
    metrics.clear("sfi_consumer_lag")
    assert "sfi_consumer_lag{" not in metrics.render()


def test_concurrent_increments_are_not_lost(metrics: Metrics) -> None:
    def work() -> None:
        for _ in range(2000):
            metrics.inc("sfi_messages_consumed_total", schema="wrdn")
            metrics.inc("sfi_inflight_files")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert metrics.get("sfi_messages_consumed_total", schema="wrdn") == 16000
    _, samples = parse_exposition(metrics.render())
    assert samples[("sfi_inflight_files", frozenset())] == 16000


def test_health_monitor_answers_from_its_cache_and_checks_once_per_interval() -> None:
    """/health must answer at once whatever a check does, and never run (log in) more than once per interval."""
    import time

    from scicat_fw_ingest.daemon.health import HealthMonitor

    calls = {"scicat": 0}
    release = threading.Event()

    def scicat() -> tuple[bool, str]:
        calls["scicat"] += 1
        return True, "reachable"

    def hanging() -> tuple[bool, str]:
        release.wait(30)
        return True, "late"

    monitor = HealthMonitor({"scicat": scicat, "kafka": hanging}, interval=3600, stuck_after=0.2).start()
    try:
        for _ in range(50):  # a scrape storm
            report = monitor.report(wait_first=0.5)
        assert report["scicat"] == (True, "reachable")
        assert calls["scicat"] == 1  # one check per interval however often /health is asked
        time.sleep(0.3)
        ok, detail = monitor.report(wait_first=0)["kafka"]
        assert not ok and detail.startswith("no answer for")
    finally:
        release.set()
        monitor.stop()


def test_ops_server_health_comes_back_while_a_check_hangs() -> None:
    from scicat_fw_ingest.daemon.health import HealthMonitor

    release = threading.Event()
    monitor = HealthMonitor({"scicat": lambda: (release.wait(30), "late")}, interval=3600, stuck_after=0.1).start()
    try:
        with OpsServer(0, health=monitor.report, metrics=lambda: "") as server:
            status, _, body = get(f"{server.url}/health")  # urlopen timeout 5 s: a hang would fail here
        assert status == 503 and json.loads(body)["checks"]["scicat"]["ok"] is False
    finally:
        release.set()
        monitor.stop()
