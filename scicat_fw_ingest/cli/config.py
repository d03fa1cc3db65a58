"""``sfi config``: show the effective configuration with secrets masked, or check it (``--check``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ._app import app
from ._common import ConfigOpt, load, warn


@app.command("config")
def show_config(
    check: Annotated[bool, typer.Option("--check", help="Only validate the whole configuration: one line per "
                                        "problem, exit 1 when there is any.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Print the effective configuration (file, environment and defaults merged; secrets as ***).

    Every problem the other commands would refuse to start with is listed on stderr, one line each
    (profile directories, profiles, [defaults] keys, path maps, SciCat URL, numbers); the exit code
    is then 1. With --check only the problems (or "configuration OK") are printed.
    """
    from ..config_check import problems

    cfg = load(config, check=False)
    found = problems(cfg)
    if not check:
        print(json.dumps(cfg.masked(), indent=2, sort_keys=True))
    for line in found:
        warn(f"error: {line}")
    if check and not found:
        print(f"configuration OK ({cfg.source or 'no file: environment and defaults'})")
    raise typer.Exit(1 if found else 0)
