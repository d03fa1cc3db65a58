"""Options shared by every command, the global options, and the bridge from flags to the one config model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..config import Config, load_config
from ._app import app
from ._warn import warn as warn  # re-exported: the commands import it from here

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML config file (else the global -c, else $SFI_CONFIG).",
                 show_default=False),
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

# -- options of the two ingestion daemons (listen, watch): one declaration each, the same help ---------
StateDirOpt = Annotated[str | None, typer.Option("--state-dir", help="State directory, shared by sfi listen and "
                                                 "sfi watch (else $SFI_STATE_DIR or \\[listen] state_dir).",
                                                 show_default=False)]
WorkersOpt = Annotated[int | None, typer.Option("--workers", "-j", help="Files ingested at once (default 4).",
                                                show_default=False)]
ProcessesOpt = Annotated[int | None, typer.Option("--processes", help="Worker processes for ingestion (default "
                                                  "2; 0 = threads only).", show_default=False)]
ScicatUrlOpt = Annotated[str | None, typer.Option("--scicat-url", help="SciCat base URL incl. /api/v3.",
                                                  show_default=False)]
CatalogueDirOpt = Annotated[str | None, typer.Option("--catalogue-dir", help="Without SciCat: write the "
                                                     "documents here.", show_default=False)]
ChecksumOpt = Annotated[str | None, typer.Option("--checksum", help="sha256|blake2b|md5|none.",
                                                 show_default=False)]
HttpPortOpt = Annotated[int | None, typer.Option("--http-port", help="Serve /health and /metrics.",
                                                 show_default=False)]
HttpHostOpt = Annotated[str | None, typer.Option("--http-host", help="Address for --http-port (default "
                                                 "127.0.0.1).", show_default=False)]
NoPreviewOpt = Annotated[bool, typer.Option("--no-preview", help="Draw and attach no preview picture (else "
                                            "\\[ingest] preview, default: on).")]
LogFormatOpt = Annotated[str | None, typer.Option("--log-format", help="text|json.", show_default=False)]

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)

#: ``sfi -c FILE COMMAND``: the config named before the command (a command's own -c wins).
_global_config: Path | None = None


def _show_version(value: bool) -> None:
    if value:
        from .. import __version__

        sys.stdout.write(f"sfi {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _global_options(
    config: Annotated[Path | None, typer.Option("--config", "-c", show_default=False,
                                                help="TOML config file for any command (else $SFI_CONFIG).")] = None,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                          help="Print the version of sfi and exit.")] = False,
) -> None:
    """sfi — ingest NeXus files finished by the ESS/ISIS file writer into SciCat, and inspect its Kafka channels."""
    global _global_config
    _global_config = config


def load(config: Path | None, *, check: bool = True, **tables: dict[str, Any]) -> Config:
    """The effective config: flags (``tables``, ``None`` = not given) > env > file > defaults.

    The whole configuration is validated (``config_check``) before the command does any work:
    every problem is one line of the ``ConfigError`` (exit 2).
    """
    cfg = load_config(config or _global_config, overrides=tables)
    if check:
        from ..config_check import validate

        validate(cfg)
    return cfg


def start_logging(cfg: Config, log_format: str, verbose: int = 0, quiet: int = 0, level: str | None = None) -> None:
    """One formatter for every log line of a long-running command; configured secrets are scrubbed from them."""
    from .._logging import level_from_flags, register_config_secrets, setup_logging

    setup_logging(log_format, level_from_flags(verbose, quiet, level))
    register_config_secrets(cfg)


