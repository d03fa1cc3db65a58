"""The listener's operational signals: cached health checks and broker-problem reporting.

Why cached: ``/health`` must answer within 2 s whatever SciCat or Kafka does (a hanging SciCat
made it hang), and a probe every few seconds must not log in to SciCat each time. So each check runs
in its own background thread every ``interval`` seconds and /health reads the last answer; a check
still running after ``stuck_after`` seconds is reported failing ("no answer for N s").

Why a broker reporter: librdkafka reports an unreachable broker or refused authentication only
through its error callback; without it the listener logged nothing for minutes. The first
problem is logged at once (within one poll), then again every ``repeat`` seconds while it lasts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError as _LibKafkaError

from .._logging import scrub
from ..config import Config
from ..ingest.sink import Ingests
from ..kafka import make_admin
from .state import StateStore

log = logging.getLogger("sfi.listen")

Check = Callable[[], tuple[bool, str]]


class HealthMonitor:
    """Runs named checks in background threads; ``report()`` returns the cached answers at once."""

    def __init__(self, checks: dict[str, Check], *, interval: float = 15.0, stuck_after: float = 5.0) -> None:
        self.checks, self.interval, self.stuck_after = checks, interval, stuck_after
        self._results: dict[str, tuple[bool, str]] = {}
        self._running_since: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> HealthMonitor:
        for name, check in self.checks.items():
            thread = threading.Thread(target=self._loop, args=(name, check), name=f"sfi-health-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, name: str, check: Check) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._running_since[name] = time.monotonic()
            try:
                answer = check()
            except Exception as exc:  # the failure is the answer
                answer = (False, str(exc) or type(exc).__name__)
            with self._lock:
                self._running_since.pop(name, None)
                self._results[name] = (bool(answer[0]), scrub(" ".join(str(answer[1]).split())))
                if len(self._results) == len(self.checks):
                    self._first.set()
            self._stop.wait(self.interval)

    def report(self, wait_first: float = 1.5) -> dict[str, tuple[bool, str]]:
        """The last answer of every check (waiting up to ``wait_first`` s for the very first round)."""
        self._first.wait(wait_first)
        now = time.monotonic()
        out: dict[str, tuple[bool, str]] = {}
        with self._lock:
            for name in self.checks:
                since = self._running_since.get(name)
                if since is not None and now - since > self.stuck_after:
                    out[name] = (False, f"no answer for {now - since:.0f} s")
                elif name in self._results:
                    out[name] = self._results[name]
                else:
                    out[name] = (False, "first check still running")
        return out


#: librdkafka error codes that mean "cannot talk to the cluster at all" (logged as ERROR).
_BROKER_DOWN = {_LibKafkaError._ALL_BROKERS_DOWN, _LibKafkaError._TRANSPORT, _LibKafkaError._RESOLVE,
                _LibKafkaError._AUTHENTICATION, _LibKafkaError.SASL_AUTHENTICATION_FAILED,
                _LibKafkaError._SSL, _LibKafkaError.TOPIC_AUTHORIZATION_FAILED,
                _LibKafkaError.GROUP_AUTHORIZATION_FAILED, _LibKafkaError.CLUSTER_AUTHORIZATION_FAILED}


class BrokerProblems:
    """librdkafka's ``error_cb``: one ERROR at once, then one every ``repeat`` s while the problem lasts."""

    def __init__(self, bootstrap: str | None, repeat: float = 180.0) -> None:
        self.bootstrap = bootstrap or "?"
        self.repeat = repeat
        self._since: float | None = None
        self._last_logged = -1e18

    @property
    def active(self) -> bool:
        return self._since is not None

    def __call__(self, err: _LibKafkaError) -> None:
        now = time.monotonic()
        if err.code() not in _BROKER_DOWN and not err.fatal():
            log.debug("Kafka: %s", err.str())
            return
        if self._since is None:
            self._since = now
        if now - self._last_logged >= self.repeat:
            self._last_logged = now
            lasting = now - self._since
            kind = "refuses authentication" if "AUTH" in err.name() else "unreachable"
            still = f" (for {lasting:.0f} s; consumption waits)" if lasting >= 1 else ""
            log.error("Kafka at %s %s: %s%s", self.bootstrap, kind, err.str(), still)

    def ok(self) -> None:
        """Something came back from the broker: the problem (if any) is over."""
        if self._since is not None:
            log.info("Kafka at %s reachable again after %.0f s", self.bootstrap, time.monotonic() - self._since)
            self._since = None
            self._last_logged = -1e18


class _HealthOptions(Protocol):
    """What the checks read of ``listen.ListenOptions`` (named here: health is below listen)."""

    health_interval: float


class ListenerChecks:
    """The listener's three health checks (run by ``HealthMonitor``) and the cached answer for /health."""

    _health: HealthMonitor
    _admin: Any
    _admin_lock: threading.Lock
    cfg: Config
    options: _HealthOptions
    ingestor: Ingests
    state: StateStore

    @property
    def paused(self) -> bool:
        """Whether consumption is paused because the state store refuses writes (the listener says)."""
        return False

    def health(self) -> dict[str, tuple[bool, str]]:
        checks = self._health.report()
        if self.paused:
            checks["state"] = (False, f"{self.state.path}: not writable; consumption paused")
        return checks

    def _check_kafka(self) -> tuple[bool, str]:
        with self._admin_lock:  # its own client: the consumer belongs to the polling thread
            if self._admin is None:
                self._admin = make_admin(self.cfg)
            n = len(self._admin.list_topics(timeout=min(5.0, self.options.health_interval)).brokers)
        return n > 0, f"{n} broker(s) reachable"

    def _check_scicat(self) -> tuple[bool, str]:
        self.ingestor.sink.ping()
        return True, "reachable"

    def _check_state(self) -> tuple[bool, str]:
        self.state.ping()
        return True, str(self.state.path)
