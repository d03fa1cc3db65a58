"""``sfi ingest-file``: finished NeXus files (by hand or from cron) into SciCat through the shared ingest core."""

from __future__ import annotations

import fnmatch
import glob
import json
import os
from collections.abc import Iterator
from contextlib import nullcontext
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from ..ingest.datablock import ALGORITHMS
from ._app import app
from ._common import ConfigOpt, JsonOpt, NoPreviewOpt, load, stderr, stdout, warn
from ._render import abbreviate_id, abbreviate_path

if TYPE_CHECKING:  # the ingest core loads h5py: imported in the command, not for --help
    from ..ingest import IngestResult, Ingestor
    from ..ingest.batch import BatchOutcome

_GLOB_CHARS = set("*?[")


def expand_paths(paths: list[str], patterns: list[str]) -> Iterator[tuple[str, str | None]]:
    """(path, problem) in the order given: files as is, directories walked, globs expanded; no duplicates."""
    seen: set[str] = set()

    def once(path: str) -> Iterator[tuple[str, str | None]]:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            yield path, None

    for given in paths:
        if os.path.isdir(given):
            found = list(_walk(given, patterns))
            if not found:
                warn(f"ingest-file: {given}: no file matches {','.join(patterns)}")
            for path in found:
                yield from once(path)
        elif not os.path.exists(given) and _GLOB_CHARS & set(given):
            matched = sorted(glob.glob(given, recursive=True))
            if not matched:
                yield given, f"{given}: no file matches this pattern"
            for path in matched:
                if os.path.isdir(path):
                    for inner in _walk(path, patterns):
                        yield from once(inner)
                else:
                    yield from once(path)
        else:
            yield from once(given)  # a missing file is reported by the ingest core


def _walk(folder: str, patterns: list[str]) -> Iterator[str]:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if any(fnmatch.fnmatch(name, p) for p in patterns):
                yield os.path.join(root, name)


@app.command("ingest-file")
def ingest_file_command(
    paths: Annotated[list[str], typer.Argument(help="NeXus files, directories (searched recursively) or globs.",
                                               show_default=False)],
    pattern: Annotated[str | None, typer.Option("--pattern", help="File name patterns for directories, "
                                                "comma-separated (else \\[ingest] pattern, "
                                                "default: *.nxs,*.nx5,*.hdf,*.hdf5,*.h5).",
                                                show_default=False)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run",
                                          help="Build and print the payloads; do not contact SciCat.")] = False,
    explain: Annotated[bool, typer.Option("--explain", help="Show each field's value and where it came from; "
                                          "SciCat is only read (scicat: lookups in the profile).")] = False,
    profile: Annotated[str | None, typer.Option("--profile", help="Mapping profile name or .toml path "
                                                "(else chosen per file).", show_default=False)] = None,
    checksum: Annotated[str | None, typer.Option("--checksum", help=f"{'|'.join(ALGORITHMS)} (else \\[ingest] "
                                                 "checksum, default: sha256).", show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-j", min=1, help="Worker processes, files in "
                                                "parallel (else \\[ingest] workers, default: 4).",
                                                show_default=False)] = None,
    scicat_url: Annotated[str | None, typer.Option("--scicat-url", help="SciCat API base, e.g. "
                                                   "https://scicat.example/api/v3 "
                                                   "(else $SFI_SCICAT_URL or \\[scicat] url).",
                                                   show_default=False)] = None,
    complete_when: Annotated[str | None, typer.Option("--complete-when", help="When a file counts as finished: "
                                                      "read-only-or-settled|read-only|settled|at-once (else "
                                                      "\\[ingest] complete_when, default: read-only-or-settled).",
                                                      show_default=False)] = None,
    no_preview: NoPreviewOpt = False,
    preview_dir: Annotated[str | None, typer.Option("--preview-dir", help="Also write each dataset's preview "
                                                    "as PNG into this folder (with --dry-run: look before "
                                                    "anything is sent).", show_default=False)] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Ingest finished NeXus files into SciCat as raw datasets with their file list.

    Datasets that already exist (with their file list) are skipped: a backfill can re-run safely.
    Files are ingested in worker processes (-j), using every core.

    Ctrl-C stops the batch within 2 s: files in flight finish or are abandoned, a summary says what
    was done and what was not (exit 130); re-run the same command for the rest.

    A file still being written is not read: it is ingested once its writer made it read-only (kafka-to-nexus
    sets 0440 when done) or, else, once its size and mtime stayed unchanged for \\[ingest] settle_seconds
    (at once for files older than that); see --complete-when.

    Credentials come only from the environment (SFI_SCICAT_TOKEN, ...) or the config file.

    Exit 0 when every file was created, existed or (--dry-run) was built; 1 when any failed; 2 for bad
    usage; 130 when interrupted.
    """
    if checksum is not None and checksum not in ALGORITHMS:
        raise typer.BadParameter(f"'{checksum}' is not one of {', '.join(ALGORITHMS)}", param_hint="--checksum")
    if preview_dir is not None and no_preview:
        raise typer.BadParameter("--preview-dir draws the previews that --no-preview turns off: give one of them")
    cfg = load(config, ingest={"checksum": checksum, "profile": profile, "workers": workers, "pattern": pattern,
                               "complete_when": complete_when, "preview": False if no_preview else None,
                               "preview_dir": preview_dir},
               scicat={"url": scicat_url})
    from ..ingest import IngestResult, Ingestor
    from ..ingest.batch import AUTH_STOP

    patterns = [p.strip() for p in cfg.ingest.pattern.split(",") if p.strip()]
    items = list(expand_paths(paths, patterns))
    files = [path for path, problem in items if problem is None]
    early = [IngestResult(path, None, "failed", error=problem) for path, problem in items if problem]

    if explain:
        ingestor = Ingestor(cfg, None, explicit_paths=paths, lookup_from=_lookup_client(cfg))
        failed = len(early)
        for result in early:
            warn(f"ingest-file: {result.error}")
        for path in files:
            failed += _explain_one(ingestor, path, as_json)
        raise typer.Exit(1 if failed else 0)

    try:
        Ingestor(cfg, None, explicit_paths=paths)  # checksum, [defaults], profiles checked once, before any worker
        if not dry_run and files:
            _check_scicat(cfg)
    except KeyboardInterrupt:
        warn(f"ingest-file: interrupted before the first file: 0 file(s) done, {len(files)} not done")
        raise typer.Exit(130) from None
    outcome = _run(cfg, files, as_json, dry_run, paths)
    for result in early:
        outcome.total += 1
        outcome.add(result)
        _emit(result, as_json, dry_run)
    if not as_json:
        _summary(outcome)
    if outcome.auth_error:
        warn(f"ingest-file: stopped after {AUTH_STOP} files in a row were refused by SciCat (check the "
             f"credentials): {outcome.auth_error}")
    if outcome.stopped:
        warn(f"ingest-file: stopped: {outcome.stopped}")
    if outcome.interrupted or outcome.auth_error or outcome.stopped:
        warn(f"ingest-file: {'interrupted' if outcome.interrupted else 'stopped'}: {outcome.done} file(s) done, "
             f"{outcome.not_done} not done (run the same command again: datasets that exist are skipped)")
    if outcome.interrupted:
        raise typer.Exit(130)
    refused = outcome.counts.get("failed") or outcome.counts.get("rejected")
    raise typer.Exit(1 if refused or outcome.auth_error or outcome.stopped else 0)


def _check_scicat(cfg: Any) -> None:
    """One login and one read before the batch: wrong credentials are one line, not one per file."""
    from ..scicat import ScicatClient  # imported here: a dry run needs neither requests nor pyscicat

    client = ScicatClient.from_config(cfg.scicat)
    try:
        client.ping()
    finally:
        client.close()


def _run(cfg: Any, files: list[str], as_json: bool, dry_run: bool, named: list[str]) -> BatchOutcome:
    show_bar = len(files) > 1 and stderr.is_terminal
    progress = Progress(TextColumn("ingest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=stderr, transient=True) if show_bar else None
    with progress or nullcontext():
        task = progress.add_task("files", total=len(files)) if progress else None

        def on_result(result: IngestResult) -> None:
            if progress is not None and task is not None:
                progress.advance(task)
            _emit(result, as_json, dry_run, quiet=show_bar)

        from ..ingest.batch import Batch

        return Batch(cfg, processes=cfg.ingest.workers, dry_run=dry_run, explicit_paths=named).run(files, on_result)


def _emit(result: IngestResult, as_json: bool, dry_run: bool, *, quiet: bool = False) -> None:
    if as_json:
        record = {k: v for k, v in result.to_json().items() if k != "retryable"}
        stdout.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        stdout.file.flush()
        return
    if result.status in ("failed", "rejected"):
        warn(f"ingest-file: {result.error}")
        return
    if dry_run:
        stdout.file.write(f"# {result.file} -> {result.pid}\n")
        stdout.file.write(json.dumps({"dataset": result.dataset, "origdatablock": result.origdatablock},
                                     indent=2, ensure_ascii=False) + "\n")
        stdout.file.flush()
    elif not quiet:
        stdout.file.write(f"{result.status:8} {abbreviate_id(result.pid)}  {result.file}\n")
        stdout.file.flush()


def _summary(outcome: BatchOutcome) -> None:
    table = Table(title="ingest-file summary", show_edge=False)
    table.add_column("status")
    table.add_column("files", justify="right")
    for status in ("created", "repaired", "exists", "dry-run", "failed", "rejected"):
        if outcome.counts.get(status):
            table.add_row(status, str(outcome.counts[status]))
    if outcome.not_done:
        table.add_row("not done", str(outcome.not_done))
    table.add_row("total", str(outcome.total))
    stdout.print(table)
    if outcome.previews:  # e.g. "previews: 12 created, 3 none (no picture applies)"
        shown = {"none": "none (no picture applies)", "hidden": "hidden (no read right)", "off": "not drawn"}
        stdout.file.write("previews: " + ", ".join(f"{n} {shown.get(k, k)}" for k, n in
                                                   sorted(outcome.previews.items())) + "\n")
    if outcome.failed:
        errors = Table(title="failed files", show_edge=False)
        errors.add_column("file", overflow="fold")
        errors.add_column("retry?")
        errors.add_column("reason", overflow="fold")
        for file, retryable, reason in sorted(outcome.failed):
            errors.add_row(Text(abbreviate_path(file, 30)), "yes" if retryable else "no",
                           Text(reason.replace(file, abbreviate_path(file, 30))))
        stdout.print(errors)


def _lookup_client(cfg: Any) -> Any:
    """A SciCat client for the profile's scicat: lookups (reads only), or None without url or credentials."""
    if not cfg.scicat.url:
        return None
    from ..errors import ConfigError
    from ..scicat import ScicatClient

    try:
        return ScicatClient.from_config(cfg.scicat)
    except ConfigError as exc:
        warn(f"ingest-file: --explain without scicat: lookups: {exc}")
        return None


def _explain_one(ingestor: Ingestor, path: str, as_json: bool) -> int:
    from ..errors import SfiError

    try:
        rows = ingestor.explain(path)
    except SfiError as exc:
        warn(f"ingest-file: {exc}")
        return 1
    missing = [name for name, value, origin in rows if value is None and origin.startswith("MISSING")]
    if as_json:
        record: dict[str, Any] = {"file": path, "fields": [{"field": f, "value": v, "source": s} for f, v, s in rows],
                                  "missing": missing}
        stdout.file.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    else:
        table = Table(title=Text(path), show_edge=False)
        table.add_column("field")
        table.add_column("value", overflow="fold")
        table.add_column("from", overflow="fold")
        for name, value, origin in rows:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            shown = "-" if value is None else text
            table.add_row(Text(name), Text(shown if len(shown) < 300 else shown[:297] + "..."), Text(origin))
        stdout.print(table)
    if missing:
        warn(f"ingest-file: {path}: no value for required field(s) {', '.join(missing)} "
             "(set them in the config's [defaults] table)")
    return 1 if missing else 0
