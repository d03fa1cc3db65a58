"""``sfi profile import``: scicat-ingestor metadata schemas (``*.imsc.yml``) become sfi TOML profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app
from ._common import stdout, warn

profile_app = typer.Typer(help="Mapping profiles: convert scicat-ingestor schemas.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")


@profile_app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="scicat-ingestor schemas (*.imsc.yml).", show_default=False)],
    out: Annotated[Path, typer.Option("--output", "-o", help="Directory for the .toml profiles (created if "
                                      "absent); add it to \\[ingest] profile_dirs.", show_default=False)],
    force: Annotated[bool, typer.Option("--force", help="Overwrite profiles that exist already.")] = False,
) -> None:
    """Convert scicat-ingestor metadata schemas into sfi profiles, one NAME.toml per NAME.imsc.yml.

    NXS variables become nexus: sources, SC lookups scicat: sources, VALUE operators field options.
    Whatever cannot be converted is listed, one line each (and as comments in the profile); the
    profile still loads. Exit 0 when every file was converted, 1 when any could not be, 2 for bad usage.
    """
    from ..errors import SfiError
    from ..mapping.imsc import convert_schema, profile_name, read_schema

    if out.exists() and not out.is_dir():
        raise typer.BadParameter(f"{out} exists and is not a directory", param_hint="--output")
    out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in files:
        target = out / f"{profile_name(path)}.toml"
        try:
            if target.exists() and not force:
                raise SfiError(f"{target} exists already (--force overwrites it)")
            conversion = convert_schema(read_schema(path), profile_name(path), str(path))
            target.write_text(conversion.toml, encoding="utf-8")
        except SfiError as exc:
            warn(f"profile import: {exc}")
            failed += 1
            continue
        for note in conversion.notes:
            warn(f"profile import: {path.name}: {note}")
        stdout.print(f"{path} -> {target} (profile '{conversion.name}', {len(conversion.notes)} "
                     f"note{'s' if len(conversion.notes) != 1 else ''})")
    raise typer.Exit(1 if failed else 0)
