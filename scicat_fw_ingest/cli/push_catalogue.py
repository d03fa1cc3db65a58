"""``sfi push-catalogue DIR``: send a local catalogue directory (written by ``sfi listen``) to a SciCat."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from ..catalogue import CatalogueDir, PushResult, push_catalogue
from ..errors import ConfigError
from ._app import app
from ._common import ConfigOpt, JsonOpt, load, stdout, warn

_ORDER = ("created", "exists", "repaired", "ready", "failed")


@app.command("push-catalogue")
def push_catalogue_command(
    directory: Annotated[Path, typer.Argument(help="The catalogue directory (\\[listen] catalogue_dir).",
                                              show_default=False)],
    scicat_url: Annotated[str | None, typer.Option("--scicat-url", help="SciCat API base, e.g. "
                                                   "https://scicat.example.org/api/v3 (else $SFI_SCICAT_URL "
                                                   "or \\[scicat] url). Credentials come only from the "
                                                   "environment or the config file.", show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Read and check every document; contact nobody.")]
    = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Push every stored dataset and its datablock to SciCat, idempotently.

    A dataset already in SciCat is reported "exists" and left alone, one without its datablock gets
    it ("repaired"). A corrupt or incomplete document is reported as failed, naming the file, and
    the others are still pushed. Exit 0 when none failed, 1 otherwise, 2 for usage or config errors.
    """
    if not directory.is_dir():  # checked here, not by typer, whose boxed message wraps long paths
        raise ConfigError(f"push-catalogue: {directory}: " + ("not a directory" if directory.exists() else "not found"))
    catalogue = CatalogueDir(directory, create=False)
    results: list[PushResult] = []
    interrupted = False
    if dry_run:
        push_catalogue(catalogue, None, dry_run=True, results=results)
    else:
        cfg = load(config, scicat={"url": scicat_url})
        from ..scicat import ScicatClient  # here: pyscicat takes ~0.2 s to import, every other command skips it

        client = ScicatClient.from_config(cfg.scicat)
        try:
            push_catalogue(catalogue, client, results=results)
        except KeyboardInterrupt:  # the dataset in flight is abandoned: its upsert is idempotent
            interrupted = True
        finally:
            client.close()
    failed = [r for r in results if r.status == "failed"]
    if as_json:
        for result in results:
            stdout.file.write(json.dumps(result.to_jsonable(), ensure_ascii=False) + "\n")
        stdout.file.flush()
    else:
        for result in failed:
            warn(f"push-catalogue: {result.pid or result.path}: {result.error}")
        counts = Counter(r.status for r in results)
        parts = [f"{counts[s]} {s}" for s in _ORDER if counts[s]] or ["nothing to push"]
        verb = "checked" if dry_run else "pushed"
        stdout.file.write(f"{len(results)} dataset(s) {verb} from {directory}: {', '.join(parts)}\n")
        stdout.file.flush()
    if interrupted:
        warn(f"push-catalogue: interrupted: {len(results)} dataset(s) done, the rest not done (run the same "
             "command again: datasets already in SciCat are reported exists)")
        raise typer.Exit(130)
    raise typer.Exit(1 if failed else 0)
