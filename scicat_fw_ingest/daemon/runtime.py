"""What both daemons stand on, built once from the configuration: ``build_runtime(cfg, kind)``.

Why one function: ``sfi listen`` and ``sfi watch`` need the same parts (the state store, the sink, an ingestor
in this process or in worker processes, the ops HTTP server, signal handling) and, written twice, the two copies
drifted (``watch`` once opened the state store without ``[listen] state_busy_timeout``, ``bad_messages_max`` and
``bad_messages_days``). Here every ``[listen]`` option that shapes these parts reaches both daemons; what differs
between them is named by ``kind``: the listener's worker processes are fenced by a lease shorter than the Kafka
session (its partitions can move to another host), a watcher's are not (no consumer group).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from ..config import Config
from ..ingest.sink import Ingests, Sink
from .state import StateStore

if TYPE_CHECKING:
    from .ops_http import CheckResult, OpsServer

__all__ = ["DaemonKind", "DaemonRuntime", "build_runtime", "lease_seconds", "open_state"]

DaemonKind = Literal["listen", "watch"]


def lease_seconds(cfg: Config) -> float:
    """How long the listener's worker processes may write without the listener renewing their lease.

    Well inside ``session.timeout.ms``: the workers stop writing to SciCat before the group can give this
    listener's partitions to another one.
    """
    session_s = float(cfg.kafka.get("session.timeout.ms", 45000)) / 1000.0
    return max(1.0, 0.8 * session_s)


@dataclass
class DaemonRuntime:
    """The parts one daemon run uses; ``close()`` releases them (ops server, ingestor and sink, state store)."""

    cfg: Config
    kind: DaemonKind
    state: StateStore
    sink: Sink
    #: where datasets go, for the log (credentials are masked by the caller)
    where: str
    ingestor: Ingests
    ops: OpsServer | None = None
    _closed: bool = field(default=False, repr=False)

    def serve(self, *, stop: Callable[[], None], health: Callable[[], Mapping[str, CheckResult]],
              metrics: Callable[[], str]) -> None:
        """SIGTERM and SIGINT call ``stop``; with ``[listen] http_port``, /health and /metrics are served."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop())
        lc = self.cfg.listen
        if lc.http_port is not None:
            from .ops_http import OpsServer

            self.ops = OpsServer(lc.http_port, health=health, metrics=metrics, host=lc.http_host)
            self.ops.start()

    def close(self) -> None:
        """Stop the ops server, the ingestor (its workers and sink, or the sink) and the state store; once."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.ops is not None:
                self.ops.stop()
            self.ingestor.close()
        finally:
            self.state.close()


def open_state(cfg: Config) -> StateStore:
    """The state store as ``[listen]`` configures it (lock wait, bad-message bounds): daemons and
    ``sfi failures`` / ``sfi retry`` alike."""
    lc = cfg.listen
    return StateStore(lc.state_dir, busy_timeout=lc.state_busy_timeout, bad_max=lc.bad_messages_max,
                      bad_days=lc.bad_messages_days)


def build_runtime(cfg: Config, kind: DaemonKind) -> DaemonRuntime:
    """The state store, sink and ingestor of one ``sfi listen`` or ``sfi watch`` run, from ``cfg``.

    Files named by wrdn messages or found in watched folders come from others: the ingestor requires data
    roots. With ``[listen] processes`` > 0 files are read in worker processes (``procpool``).
    """
    from ..ingest import Ingestor, open_sink

    lc = cfg.listen
    state = open_state(cfg)
    try:
        sink, where = open_sink(cfg)
        ingestor: Ingests
        if lc.processes > 0:
            from .procpool import ProcessIngestor

            ingestor = ProcessIngestor(cfg, lc.processes, sink,
                                       fence_after=lease_seconds(cfg) if kind == "listen" else 0.0)
        else:
            ingestor = Ingestor(cfg, sink, require_roots=True)
    except BaseException:
        state.close()
        raise
    return DaemonRuntime(cfg=cfg, kind=kind, state=state, sink=sink, where=where, ingestor=ingestor)
