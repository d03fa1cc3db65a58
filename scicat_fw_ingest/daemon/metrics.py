"""Counters and gauges rendered in the Prometheus text exposition format (version 0.0.4).

Why not prometheus_client: it would be a new dependency for ~100 lines, and its process-global
registry does not suit tests that run several listeners in one process. Every metric is described
before use (kind, help, label names) so that a typo in a name or label fails at once in the tests
instead of silently exporting a series nobody scrapes.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

COUNTER, GAUGE = "counter", "gauge"
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

#: What ``sfi listen`` exports: name -> (kind, help, label names).
LISTEN_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "sfi_messages_consumed_total": (
        COUNTER, "Kafka messages consumed, by flatbuffer schema id (pl72, 6s4t, wrdn, answ, x5f2, ...).",
        ("schema",)),
    "sfi_messages_invalid_total": (
        COUNTER, "Messages that could not be decoded, had an unexpected schema or carried bad JSON.", ()),
    "sfi_datasets_total": (
        COUNTER, "Finished files by outcome: created, exists, repaired, skipped, queued, failed, rejected.",
        ("outcome",)),
    "sfi_consumption_paused": (
        GAUGE, "1 while the listener holds consumption because the state store cannot record outcomes.", ()),
    "sfi_retry_queue_depth": (
        GAUGE, "Files waiting in the durable retry queue.", ()),
    "sfi_last_success_timestamp_seconds": (
        GAUGE, "Unix time of the last dataset stored (created, exists or repaired); 0 before the first.", ()),
    "sfi_consumer_lag": (
        GAUGE, "Messages not yet read: the partition's high watermark minus the listener's read position.",
        ("topic", "partition")),
    "sfi_messages_unread": (
        GAUGE, "Messages not yet read, over all assigned partitions (the backlog waiting in Kafka).", ()),
    "sfi_files_queued_in_memory": (
        GAUGE, "Finished files read and held in memory, waiting for a worker (at most [listen] inflight_max).", ()),
    "sfi_files_ingesting": (
        GAUGE, "Finished files a worker is ingesting right now.", ()),
    "sfi_inflight_files": (
        GAUGE, "Files held in memory: queued for a worker plus being ingested.", ()),
}

_LabelKey = tuple[tuple[str, str], ...]


@dataclass
class _Metric:
    kind: str
    help: str
    labels: tuple[str, ...] | None  # None: any label names
    samples: dict[_LabelKey, float] = field(default_factory=dict)


class Metrics:
    """A thread-safe registry; ``Metrics(LISTEN_METRICS)`` is the listener's."""

    def __init__(self, table: Mapping[str, tuple[str, str, tuple[str, ...]]] | None = None) -> None:
        self._lock = threading.Lock()
        self._metrics: dict[str, _Metric] = {}
        for name, (kind, help_text, labels) in (table or {}).items():
            self.describe(name, kind, help_text, labels=labels)

    def describe(self, name: str, kind: str, help: str, *, labels: tuple[str, ...] | None = None) -> None:
        """Declare a metric; ``labels`` fixes its label names (``None`` accepts any). Re-describing replaces help."""
        if not _NAME.match(name):
            raise ValueError(f"metric name '{name}' is not a valid Prometheus name")
        if kind not in (COUNTER, GAUGE):
            raise ValueError(f"metric {name}: kind must be '{COUNTER}' or '{GAUGE}', not '{kind}'")
        for label in labels or ():
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"metric {name}: '{label}' is not a valid label name")
        with self._lock:
            old = self._metrics.get(name)
            if old is not None and (old.kind != kind or old.labels != labels):
                raise ValueError(f"metric {name}: already described as a {old.kind} with labels {old.labels}")
            if old is not None:
                old.help = help
            else:
                self._metrics[name] = _Metric(kind, help, tuple(labels) if labels is not None else None)

    def inc(self, name: str, amount: float = 1, **labels: object) -> None:
        """Add ``amount`` (a counter only goes up; a gauge may take a negative amount)."""
        with self._lock:
            metric, key = self._lookup(name, labels)
            if metric.kind == COUNTER and amount < 0:
                raise ValueError(f"metric {name}: a counter cannot decrease (amount {amount})")
            metric.samples[key] = metric.samples.get(key, 0.0) + float(amount)

    def set(self, name: str, value: float, **labels: object) -> None:
        """Set a gauge to ``value``."""
        with self._lock:
            metric, key = self._lookup(name, labels)
            if metric.kind != GAUGE:
                raise ValueError(f"metric {name}: only a gauge can be set, this is a {metric.kind}")
            metric.samples[key] = float(value)

    def get(self, name: str, **labels: object) -> float:
        """The current value of one series (0 when never touched)."""
        with self._lock:
            metric, key = self._lookup(name, labels)
            return metric.samples.get(key, 0.0)

    def clear(self, name: str) -> None:
        """Drop every series of ``name`` (e.g. the lag of partitions no longer assigned)."""
        with self._lock:
            self._require(name).samples.clear()

    def render(self) -> str:
        """The text exposition: # HELP, # TYPE, then one line per series; unlabelled series start at 0."""
        lines: list[str] = []
        with self._lock:
            for name, metric in self._metrics.items():
                lines.append(f"# HELP {name} {_escape_help(metric.help)}")
                lines.append(f"# TYPE {name} {metric.kind}")
                samples = dict(metric.samples)
                if not samples and not metric.labels:
                    samples[()] = 0.0
                for key in sorted(samples):
                    lines.append(f"{name}{_label_text(key)} {_number(samples[key])}")
        return "\n".join(lines) + "\n" if lines else ""

    # -- internals ---------------------------------------------------------------------------------
    def _require(self, name: str) -> _Metric:
        metric = self._metrics.get(name)
        if metric is None:
            raise ValueError(f"metric {name} is not described (call describe() first)")
        return metric

    def _lookup(self, name: str, labels: Mapping[str, object]) -> tuple[_Metric, _LabelKey]:
        metric = self._require(name)
        if metric.labels is not None and set(labels) != set(metric.labels):
            raise ValueError(f"metric {name}: labels must be {sorted(metric.labels)}, got {sorted(labels)}")
        for label in labels:
            if not _LABEL.match(label) or label.startswith("__"):
                raise ValueError(f"metric {name}: '{label}' is not a valid label name")
        order = metric.labels if metric.labels is not None else tuple(sorted(labels))
        return metric, tuple((label, str(labels[label])) for label in order)


def escape_label_value(value: str) -> str:
    """Backslash, double quote and newline escaped as the exposition format requires."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _label_text(key: _LabelKey) -> str:
    if not key:
        return ""
    return "{" + ",".join(f'{label}="{escape_label_value(value)}"' for label, value in key) + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2 ** 53:
        return str(int(value))
    return repr(value)
