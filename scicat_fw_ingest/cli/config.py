"""``sfi config``: show the effective configuration with secrets masked."""

from __future__ import annotations

import json

from ._app import app
from ._common import ConfigOpt, load


@app.command("config")
def show_config(config: ConfigOpt = None) -> None:
    """Print the effective configuration (file, environment and defaults merged; secrets as ***)."""
    cfg = load(config)
    print(json.dumps(cfg.masked(), indent=2, sort_keys=True))
