"""The one ingest path shared by ``sfi ingest-file``, ``sfi listen`` and ``sfi watch``: a finished file becomes a
dataset.

Why one core: a cron backfill and the live daemons must produce the very same dataset (same pid, same fields) for
the same file, so that re-running either never creates a duplicate. The file is the source of truth; what Kafka said
about it (``RunInfo``) only fills gaps. ``Ingestor.ingest`` never raises for expected failures: it returns an
``IngestResult`` that says whether retrying may help, so a daemon can requeue and a batch can move on.

Modules: ``run`` (the values passed in and out), ``sink`` (the ``Sink`` and ``Ingests`` protocols), ``_open``
(``open_sink``), ``_core`` (``Ingestor``), ``datablock`` (checksums and the origdatablock), ``batch``
(``ingest-file``'s parallel batch; imported by name, not re-exported here, as it is the CLI's).

``Ingestor`` and ``open_sink`` are loaded on first use (PEP 562): they import h5py and the SciCat client, and a
command that only needs ``datablock.ALGORITHMS`` or ``RunInfo`` must not pay for that at start-up.
"""

from typing import TYPE_CHECKING, Any

from .run import IngestResult, RunInfo
from .sink import Ingests, Sink

if TYPE_CHECKING:
    from ._core import MAX_READS, PERMANENT_ERRNOS, Ingestor, explicit_roots
    from ._open import open_sink

__all__ = ["MAX_READS", "PERMANENT_ERRNOS", "IngestResult", "Ingestor", "Ingests", "RunInfo", "Sink",
           "explicit_roots", "open_sink"]

_LAZY = {"MAX_READS": "_core", "PERMANENT_ERRNOS": "_core", "Ingestor": "_core", "explicit_roots": "_core",
         "open_sink": "_open"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
