"""One configuration model for every command: flags > environment (SFI_*) > TOML file > defaults.

Why a hand-written loader: the TOML ``[kafka]`` table must pass to librdkafka verbatim, every other
table is typed, and a mistake must come back as one line naming the file (or variable, or flag),
the key and the problem — so that a typo in a cron job's config fails loudly instead of silently
using a default. Secrets are held in ``SecretStr`` so that no repr, log line or dump shows them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .masking import MASK as MASK
from .masking import SecretStr as SecretStr
from .masking import is_secret_kafka_key as is_secret_kafka_key
from .masking import mask_url_credentials as mask_url_credentials
from .masking import masked_url as masked_url
from .masking import masked_value


def _choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


@dataclass
class ScicatConfig:
    """Where and how to reach SciCat. ``url`` ends in ``/api/v3`` or ``/api/v4`` (checked at load)."""

    url: str | None = None
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    timeout: float = 30.0
    max_attempts: int = 6
    backoff: float = 0.5
    #: API version for datasets and datablocks; "auto" takes it from the url (login is always on v3)
    api: str = field(default="auto", metadata=_choices("auto", "v3", "v4"))
    #: where the per-pid lock files live (default: $TMPDIR/sfi-scicat-<uid>, shared by all sfi processes)
    lock_dir: str | None = None
    #: seconds to wait after an unanswered datablock POST before looking whether it was stored
    grace: float = 5.0
    #: a group of sfi's own account added to every dataset's accessGroups, so that it can always read back
    #: (and, on v4, add datablocks to) what it created — the look that keeps datablocks exactly once needs it
    access_group: str | None = None


@dataclass
class IngestConfig:
    """How a finished file becomes a dataset (shared by ``ingest-file`` and ``listen``)."""

    pid_prefix: str = ""
    checksum: str = field(default="sha256", metadata=_choices("sha256", "blake2b", "md5", "none"))
    #: ``[[writer_prefix, local_prefix], ...]``: the writer's path for a file mapped to this host's.
    path_map: list[list[str]] = field(default_factory=list, metadata={"pairs": True})
    profile_dirs: list[str] = field(default_factory=list)
    profile: str | None = None
    #: Seconds to keep retrying a file that is missing or still locked by its writer.
    file_wait: float = 30.0
    workers: int = 4
    source_folder_host: str | None = None
    pattern: str = "*.nxs,*.nx5,*.hdf,*.hdf5,*.h5"
    #: Folders every ingested file must lie in (after resolving symlinks); default: path_map's local sides.
    data_roots: list[str] = field(default_factory=list)
    #: Hours a missing or unreadable file stays in the listener's retry queue before it is ``failed``.
    missing_hours: float = 6.0
    #: When a named file (wrdn, ingest-file) is complete enough to read: the writer made it read-only
    #: (kafka-to-nexus >= eed2958d: 0440), else unchanged for ``settle_seconds``; see completion/settle.py.
    complete_when: str = field(default="read-only-or-settled",
                               metadata=_choices("read-only-or-settled", "read-only", "settled", "at-once"))
    #: Seconds size and mtime must stay unchanged for a file to count as settled.
    settle_seconds: float = 10.0
    #: Seconds to wait for a file to be complete before it fails ("still being written"; the listener queues it).
    complete_wait: float = 120.0
    #: Zone (IANA name) of times a file writes without one, for profiles that set none; unset: UTC, said so.
    timezone: str | None = None
    #: Draw a preview picture of each file and attach it to its dataset (``sfi preview``; ``--no-preview``).
    preview: bool = True
    #: Also write each preview as ``<pid slug>--<hash>.png`` into this folder (``ingest-file --preview-dir``).
    preview_dir: str | None = None

    def patterns(self) -> list[str]:
        """``pattern`` as a list of file name globs (``watch``, ``ingest-file DIR``)."""
        return [p.strip() for p in self.pattern.split(",") if p.strip()]


@dataclass
class ListenConfig:
    """The ingestion daemon."""

    state_dir: str = "sfi-state"
    group: str = "sfi-listen"
    topics: list[str] = field(default_factory=list)
    auto_offset_reset: str = field(default="earliest", metadata=_choices("earliest", "latest"))
    on_writer_error: str = field(default="skip", metadata=_choices("skip", "ingest"))
    workers: int = 4
    #: Worker processes that read files and talk to SciCat (0 = threads of the listener only).
    processes: int = 2
    catalogue_dir: str | None = None
    http_port: int | None = None
    #: Address the /health and /metrics server binds to; 0.0.0.0 exposes it to the network.
    http_host: str = "127.0.0.1"
    log_format: str = field(default="text", metadata=_choices("text", "json"))
    #: Retry-queue backoff: first delay and cap, seconds (doubling per attempt, with jitter).
    retry_base: float = 2.0
    retry_max: float = 300.0
    #: Cached run starts older than this many days are dropped (a wrdn that late still ingests from the file).
    run_start_days: float = 30.0
    #: Seconds a state-store write waits for another process's lock before the listener pauses.
    state_busy_timeout: float = 30.0
    #: Bad messages kept in the state (newest first), and for how many days.
    bad_messages_max: int = 2000
    bad_messages_days: float = 30.0
    #: Seconds between background health checks; /health answers from the last one.
    health_interval: float = 15.0
    #: Run the listener in a child process restarted when it crashes (librdkafka on a deleted topic).
    supervise: bool = True
    #: Files (queued for a retry, or in flight) whose offsets a partition holds uncommitted before it is paused.
    held_max: int = 200
    #: Files held in memory (read, queued for a worker or being ingested) before all consumption pauses.
    inflight_max: int = 100
    #: Seconds after taking over a partition before its earlier messages may reach SciCat (the longest an
    #: earlier owner's request can still be stored); default: [scicat] timeout + grace.
    takeover_wait: float | None = None
    #: Seconds after an unknown datablock outcome or a takeover until the dataset is looked at again
    #: (duplicate datablocks repaired, a missing one added).
    verify_after: float = 120.0


@dataclass
class IsisConfig:
    """The ISIS run-start enrichment step (``forward-runinfo``)."""

    instruments: list[str] = field(default_factory=list)
    topic_pattern: str | None = None
    output_topic: str = "ALL_runInfo"
    group: str = "sfi-forward-runinfo"
    auto_offset_reset: str = field(default="latest", metadata=_choices("earliest", "latest"))
    #: With "latest": a partition without committed offset starts at messages this many seconds old (0: at the end).
    new_group_lookback: float = 300.0
    template_dir: str | None = None
    #: ``{INSTRUMENT = ["block", ...]}``: sample-environment blocks per instrument.
    sample_env: dict[str, list[str]] = field(default_factory=dict)
    #: ``{INSTRUMENT = ["name", ...]}``: run-log values (f144 on ``<INST>_runLog``) per instrument.
    runlog: dict[str, list[str]] = field(default_factory=dict)
    #: ``{INSTRUMENT = ["monitor_1", ...]}``: monitor histogram sources (da00 on ``<INST>_monitorHistograms``).
    monitors: dict[str, list[str]] = field(default_factory=dict)
    #: The forwarder's configuration topic (fc00/rf5k): PVs forwarded to ``<INST>_sampleEnv`` become blocks.
    forwarder_config_topic: str | None = None


_SECTIONS: dict[str, type] = {
    "scicat": ScicatConfig,
    "ingest": IngestConfig,
    "listen": ListenConfig,
    "isis": IsisConfig,
}

#: Environment variables with names of their own (the rest follow SFI_<TABLE>_<KEY>).
ENV_ALIASES: dict[str, tuple[str, str]] = {
    "SFI_KAFKA_BOOTSTRAP": ("kafka", "bootstrap.servers"),
    "SFI_STATE_DIR": ("listen", "state_dir"),
}


@dataclass
class Config:
    """The effective configuration of one command run."""

    kafka: dict[str, Any] = field(default_factory=dict)
    scicat: ScicatConfig = field(default_factory=ScicatConfig)
    defaults: dict[str, Any] = field(default_factory=dict)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    isis: IsisConfig = field(default_factory=IsisConfig)
    source: Path | None = None

    @property
    def bootstrap(self) -> str | None:
        value = self.kafka.get("bootstrap.servers")
        return str(value) if value else None

    def masked(self) -> dict[str, Any]:
        """The whole configuration as JSON-ready data with every secret (and URL password) replaced by ``***``."""
        out: dict[str, Any] = {"kafka": {k: (MASK if is_secret_kafka_key(k) else masked_value(v))
                                         for k, v in self.kafka.items()}}
        for name in _SECTIONS:
            out[name] = {k: masked_value(v) for k, v in dataclasses.asdict(getattr(self, name)).items()}
        out["defaults"] = dict(self.defaults)
        out["source"] = str(self.source) if self.source else None
        return out

    def __repr__(self) -> str:
        return f"Config({json.dumps(self.masked(), default=str)})"


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build the effective configuration.

    ``path`` (else ``SFI_CONFIG``) names the TOML file; ``overrides`` holds command-line flags as
    ``{table: {key: value}}`` where ``None`` means "flag not given".
    """
    env = os.environ if env is None else env
    cfg = Config()
    file_path = path or env.get("SFI_CONFIG") or None
    if file_path:
        cfg.source = Path(file_path)
        _apply_file(cfg, cfg.source)
    _apply_env(cfg, env)
    for table, values in (overrides or {}).items():
        for key, value in values.items():
            if value is not None:
                _set(cfg, table, key, value, f"flag for [{table}] {key}", from_text=False)
    return cfg


def _apply_file(cfg: Config, path: Path) -> None:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML: {exc}") from None
    for table, values in data.items():
        if table not in ("kafka", "defaults", *_SECTIONS):
            known = ", ".join(f"[{t}]" for t in ("kafka", "scicat", "defaults", *_SECTIONS))
            raise ConfigError(f"config file {path}: unknown table [{table}] (known: {known})")
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path}: '{table}' must be a table, e.g. [{table}]")
        for key, value in values.items():
            _set(cfg, table, key, value, f"config file {path}: [{table}] {key}", from_text=False)


def _apply_env(cfg: Config, env: Mapping[str, str]) -> None:
    for name, value in env.items():
        if not name.startswith("SFI_") or name in ("SFI_CONFIG", "SFI_TEST_KAFKA", "SFI_DEBUG"):
            continue
        table: str | None
        if name in ENV_ALIASES:
            table, key = ENV_ALIASES[name]
        else:
            table, key = _env_target(name)
            if table is None:
                continue
        _set(cfg, table, key, value, f"environment variable {name}", from_text=True)


def _env_target(name: str) -> tuple[str | None, str]:
    rest = name[len("SFI_"):].lower()
    for table, cls in _SECTIONS.items():
        prefix = table + "_"
        if rest.startswith(prefix):
            key = rest[len(prefix):]
            if key in {f.name for f in dataclasses.fields(cls)}:
                return table, key
    return None, ""


def _set(cfg: Config, table: str, key: str, value: Any, where: str, *, from_text: bool) -> None:
    if table == "kafka":
        if not isinstance(value, (str, int, float, bool)):
            raise ConfigError(f"{where}: must be a string, number or boolean (librdkafka property)")
        cfg.kafka[key] = value
        return
    if table == "defaults":
        cfg.defaults[key] = value
        return
    section = getattr(cfg, table)
    fields = {f.name: f for f in dataclasses.fields(section)}
    if key not in fields:
        raise ConfigError(f"{where}: unknown key (known: {', '.join(sorted(fields))})")
    setattr(section, key, _coerce(fields[key], value, where, from_text))


def _coerce(f: dataclasses.Field[Any], value: Any, where: str, from_text: bool) -> Any:
    kind = f.type if isinstance(f.type, str) else str(f.type)
    optional = "None" in kind
    base = kind.replace(" | None", "")
    if from_text and optional and value == "":
        return None
    try:
        if base == "SecretStr":
            if not isinstance(value, str):  # never echo the value: it is a secret, whatever its type
                kind = "a boolean" if isinstance(value, bool) else f"a value of type {type(value).__name__}"
                raise TypeError(f"expected a string, got {kind} (not shown: a secret)")
            return SecretStr(value)
        if base == "str":
            result = _expect(value, str)
            choices = f.metadata.get("choices")
            if choices and result not in choices:
                raise ValueError(f"must be one of {', '.join(choices)}, not '{result}'")
            return result
        if base == "int":
            return int(value) if from_text else _expect(value, int)
        if base == "float":
            return float(value) if from_text else float(_expect(value, (int, float)))
        if base == "bool":
            if from_text:
                return _parse_bool(value)
            return _expect(value, bool)
        if base == "list[str]":
            if from_text:
                return [part.strip() for part in value.split(",") if part.strip()]
            return [_expect(v, str) for v in _expect(value, list)]
        if base == "list[list[str]]":
            if from_text:
                value = [pair.split("=", 1) for pair in value.split(",") if pair.strip()]
            pairs = [[_expect(v, str) for v in _expect(pair, list)] for pair in _expect(value, list)]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("must be a list of [writer_prefix, local_prefix] pairs")
            return pairs
        if base == "dict[str, list[str]]":
            if from_text:
                value = json.loads(value)
            return {str(k): [_expect(v, str) for v in _expect(vs, list)] for k, vs in _expect(value, dict).items()}
    except (TypeError, ValueError) as exc:
        raise ConfigError(mask_url_credentials(f"{where}: {exc}")) from None
    raise ConfigError(f"{where}: unsupported type {kind}")  # a programming error, named like the others


def _expect(value: Any, types: type | tuple[type, ...]) -> Any:
    if isinstance(value, bool) and types is not bool and bool not in (types if isinstance(types, tuple) else (types,)):
        raise TypeError(f"expected {_type_name(types)}, got a boolean")
    if not isinstance(value, types):
        raise TypeError(f"expected {_type_name(types)}, got {type(value).__name__} {value!r}")
    return value


def _type_name(types: type | tuple[type, ...]) -> str:
    names = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
             "list": "a list", "dict": "a table"}
    if types == (int, float):
        return "a number"
    if isinstance(types, tuple):
        return " or ".join(names.get(t.__name__, t.__name__) for t in types)
    return names.get(types.__name__, types.__name__)


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got '{value}'")
