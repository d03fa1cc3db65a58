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

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def load(config: Path | None, **tables: dict[str, Any]) -> Config:
    """The effective config: flags (``tables``, ``None`` = not given) > env > file > defaults."""
    return load_config(config, overrides=tables)


def warn(text: str) -> None:
    """One plain line on stderr (no markup interpretation: messages contain brackets)."""
    sys.stderr.write(f"sfi: {text}\n")
    sys.stderr.flush()
