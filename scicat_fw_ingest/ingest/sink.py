"""Where datasets go, as the ingest core and the daemons see it: the ``Sink`` protocol, and ``open_sink``.

Why one protocol: SciCat (``scicat.ScicatClient``) and the local catalogue (``catalogue.CatalogueDir``) are
interchangeable behind it, so the ingest core, the daemons' health checks, ``push-catalogue`` and the preview step
are typed against the same list of methods, and a third sink knows what it must offer (``open_sink``, in
``ingest/_open``, picks one from the configuration). ``Ingests`` is the other
seam: what the daemons call of an ingestor, whether it runs in this process (``Ingestor``) or in worker processes
(``_procpool.ProcessIngestor``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..config import Config

if TYPE_CHECKING:
    from .run import IngestResult, RunInfo


class Sink(Protocol):
    """A catalogue of datasets: every write is idempotent (the pid decides), so a retry never duplicates."""

    def upsert(self, dataset: dict[str, Any], datablock: dict[str, Any]) -> str:
        """Store the dataset and its datablock once: "created", "exists" or "repaired"."""
        ...

    def upsert_uncertain(self) -> bool:
        """Whether this thread's last ``upsert`` left a datablock POST unanswered (look again later)."""
        ...

    def get_dataset(self, pid: str) -> dict[str, Any] | None:
        """The stored dataset, ``None`` when absent (or not readable by this account)."""
        ...

    def get_origdatablocks(self, pid: str) -> list[dict[str, Any]]:
        """The dataset's datablocks, ``[]`` when none."""
        ...

    def attach_preview(self, dataset: dict[str, Any], make: Callable[[], Any]) -> str:
        """Attach ``make()``'s picture once: "created", "exists", "none" or "hidden"."""
        ...

    def ping(self) -> None:
        """Raise (an ``SfiError``) unless the sink can take a dataset now: the daemons' /health check."""
        ...

    def close(self) -> None:
        """Release connections; the sink is not used afterwards."""
        ...


class Ingests(Protocol):
    """What the daemons (``listen``, ``watch``) call of an ingestor: ``Ingestor`` or ``ProcessIngestor``."""

    cfg: Config
    #: this process's sink (the daemons' health checks ping it)
    sink: Any

    def ingest(self, writer_path: str, run: RunInfo | None = None, *, wait_missing: float = 0.0,
               skip_existing: bool = True) -> IngestResult:
        """Ingest one file; never raises for expected failures (``IngestResult.retryable`` says what to do)."""
        ...

    def close(self) -> None:
        """Stop the workers (if any) and close the sink."""
        ...
