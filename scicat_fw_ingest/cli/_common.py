"""Options shared by every command, and the bridge from flags to the one config model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..config import Config, load_config

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file (else $SFI_CONFIG).", show_default=False),
]
BrokerOpt = Annotated[
    str | None,
    typer.Option("--broker", "-b", show_default=False,
                 help="Kafka bootstrap servers (else $SFI_KAFKA_BOOTSTRAP or \\[kafka] bootstrap.servers)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output: one JSON object per line.")]
#: Log verbosity of the long-running commands (listen, forward-runinfo, list-status/decode --follow).
VerboseOpt = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log detail (-v: debug).")]
QuietOpt = Annotated[int, typer.Option("--quiet", "-q", count=True, help="Less log detail (-q: warnings, "
                                       "-qq: errors only).")]
LogLevelOpt = Annotated[str | None, typer.Option("--log-level", help="debug|info|warning|error (overrides "
                                                 "-v/-q).", show_default=False)]

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def load(config: Path | None, **tables: dict[str, Any]) -> Config:
    """The effective config: flags (``tables``, ``None`` = not given) > env > file > defaults."""
    return load_config(config, overrides=tables)


def start_logging(cfg: Config, log_format: str, verbose: int = 0, quiet: int = 0, level: str | None = None) -> None:
    """One formatter for every log line of a long-running command; configured secrets are scrubbed from them."""
    from .._logging import level_from_flags, register_config_secrets, setup_logging

    setup_logging(log_format, level_from_flags(verbose, quiet, level))
    register_config_secrets(cfg)


def warn(text: str) -> None:
    """One plain line on stderr (no markup interpretation: messages contain brackets)."""
    sys.stderr.write(f"sfi: {text}\n")
    sys.stderr.flush()
