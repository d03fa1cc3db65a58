"""``sfi scicat check``: a preflight of the SciCat connection and account, one line per check."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import app
from ._common import ConfigOpt, load, stdout

scicat_app = typer.Typer(help="SciCat connection tools.", no_args_is_help=True)
app.add_typer(scicat_app, name="scicat")


@scicat_app.command("check")
def check_command(
    scicat_url: Annotated[str | None, typer.Option("--scicat-url", help="SciCat API base, e.g. "
                                                   "https://scicat.example.org/api/v3 (else $SFI_SCICAT_URL "
                                                   "or \\[scicat] url).", show_default=False)] = None,
    config: ConfigOpt = None,
) -> None:
    """Log in, report the token's expiry, try a read and a dry validation, say what the account may do.

    Creates nothing. Exit 0 when every check passed, 1 on a problem, 2 for config errors.
    """
    cfg = load(config, scicat={"url": scicat_url})
    from ..scicat import ScicatClient  # here: pyscicat is slow to import
    from ..scicat._check import preflight

    client = ScicatClient.from_config(cfg.scicat)
    try:
        lines = preflight(client, dict(cfg.defaults))
    finally:
        client.close()
    marks = {True: "ok     ", False: "PROBLEM", None: "info   "}
    for line in lines:
        stdout.file.write(f"{marks[line.ok]} {line.name:<9} {line.text}\n")
    stdout.file.flush()
    raise typer.Exit(1 if any(line.ok is False for line in lines) else 0)
