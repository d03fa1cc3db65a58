"""What a file's ingest is told (``RunInfo``: what Kafka said about the file) and what it answers (``IngestResult``).

Why apart from the ``Ingestor``: the daemons, the worker processes and the state store pass these values around
(pickled to workers, stored for retries) without needing the ingest machinery (HDF5, mapping, SciCat) loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..completion.settle import Completion

if TYPE_CHECKING:
    from streaming_data_types.finished_writing_wrdn import FinishedWriting
    from streaming_data_types.run_start_pl72 import RunStartInfo


@dataclass
class RunInfo:
    """What Kafka said about a file; every field optional, the file stays the source of truth."""

    job_id: str | None = None
    run_name: str | None = None
    instrument_name: str | None = None
    start_time_ms: int | None = None
    stop_time_ms: int | None = None
    service_id: str | None = None
    filename: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    wrdn_metadata: dict[str, Any] = field(default_factory=dict)
    writer_error: str | None = None

    @classmethod
    def from_messages(cls, run_start: RunStartInfo | None, finished: FinishedWriting | None) -> RunInfo:
        """From the decoded pl72 and/or wrdn values; unparseable metadata JSON becomes ``{}``."""
        info = cls()
        if run_start is not None:
            info.job_id = _text(run_start.job_id)
            info.run_name = _text(run_start.run_name)
            info.instrument_name = _text(run_start.instrument_name)
            info.start_time_ms = int(run_start.start_time) if run_start.start_time else None
            info.stop_time_ms = int(run_start.stop_time) if run_start.stop_time else None
            info.service_id = _text(run_start.service_id)
            info.filename = _text(run_start.filename)
            info.metadata = _json_object(run_start.metadata)
        if finished is not None:
            info.job_id = info.job_id or _text(finished.job_id)
            info.service_id = info.service_id or _text(finished.service_id)
            info.filename = _text(finished.file_name) or info.filename
            info.wrdn_metadata = _json_object(finished.metadata)
            if run_start is None:  # kafka-to-nexus copies the pl72 metadata verbatim into the wrdn
                info.metadata = info.wrdn_metadata
            if finished.error_encountered:
                info.writer_error = _text(finished.message) or "the writer reported an error"
        return info

    def as_sources(self) -> dict[str, Any]:
        """The ``run:`` source names a profile can use."""
        from ..mapping.sources import to_iso  # here: the mapping imports h5py, which a RunInfo alone must not

        return {"job_id": self.job_id, "run_name": self.run_name, "instrument_name": self.instrument_name,
                "start_time": to_iso(self.start_time_ms) if self.start_time_ms else None,
                "stop_time": to_iso(self.stop_time_ms) if self.stop_time_ms else None,
                "service_id": self.service_id, "filename": self.filename, "writer_error": self.writer_error}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text or None


def _json_object(text: Any) -> dict[str, Any]:
    if not text:
        return {}
    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


@dataclass
class IngestResult:
    file: str
    pid: str | None
    status: str  # "created" | "exists" | "repaired" | "failed" | "rejected" | "dry-run"
    error: str | None = None
    retryable: bool = False
    #: The failure is the file itself (missing, unreadable): a daemon gives up after ``[ingest] missing_hours``.
    file_problem: bool = False
    #: SciCat refused the credentials (expired or refused token, wrong password): nothing about the file.
    auth: bool = False
    #: The datablock's fate was not known for sure (an unanswered POST): the dataset is looked at again later.
    verify: bool = False
    dataset: dict[str, Any] | None = None
    origdatablock: dict[str, Any] | None = None
    #: How the file was judged complete (rule, evidence, seconds waited, reads); None when it never was.
    completion: Completion | None = None
    #: the preview picture's outcome (``preview._attach.preview_dataset``); never changes ``status``
    preview: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "pid": self.pid, "status": self.status, "error": self.error,
                "retryable": self.retryable, "dataset": self.dataset, "origdatablock": self.origdatablock,
                "completion": self.completion.to_json() if self.completion else None,
                "preview": self.preview}
