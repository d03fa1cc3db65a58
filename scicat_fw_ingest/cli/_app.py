"""The typer application object, separate so that command modules can import it without cycles."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="sfi",
    help="sfi — ingest NeXus files finished by the ESS/ISIS file writer into SciCat, and inspect its Kafka channels.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
