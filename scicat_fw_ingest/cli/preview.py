"""``sfi preview FILE... [-o OUT]``: draw the picture sfi attaches to a file's dataset, to look at it first."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from ._app import app
from ._common import JsonOpt, stdout, warn


@app.command("preview")
def preview_command(
    files: Annotated[list[Path], typer.Argument(help="NeXus files.", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output-dir", "-o",
                                                help="A folder for one <file name>.png per input (default: the "
                                                "current folder), or, for one input, a .png file name.",
                                                show_default=False)] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Say which kind of picture each file gets, or why "
                                          "none applies; draw nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Draw the preview picture of NeXus files (the thumbnail sfi attaches to each dataset in SciCat).

    The picture is the first that applies: the file's NeXus default plot (the `default` attributes down
    to an NXdata: 1-D as a line, 2-D as an image, with axis names and units); else event data
    (NXevent_data): a time-of-flight spectrum (or counts per pixel) from at most 2^17 events read in 8
    blocks spread over the run; else ISIS histogram data: the spectrum summed over the detector spectra.
    Else there is no picture, and --explain says why. Time and memory do not grow with the file.

    Exit 0 when every file got its picture (or, with --explain, was read); 1 when any got none or
    could not be read; 2 for bad usage.
    """
    writes_into_folder = output is not None and (output.is_dir() or output.suffix.lower() != ".png")
    if output is not None and not explain and len(files) > 1 and not writes_into_folder:
        raise typer.BadParameter("several files need a folder, not one .png file", param_hint="-o")
    from ..preview import NoPreview, PreviewError, find_plot, make_preview

    failed = 0
    for file in files:
        if not file.is_file():
            warn(f"preview: {file}: " + ("not a regular file" if file.exists() else "not found"))
            failed += 1
            continue
        try:
            if explain:
                found = find_plot(file)
                _explain(file, found if isinstance(found, NoPreview) else None,
                         None if isinstance(found, NoPreview) else found, as_json)
                continue
            made = make_preview(file)
        except PreviewError as exc:
            warn(f"preview: {exc}")
            failed += 1
            continue
        if isinstance(made, NoPreview):
            warn(f"preview: {file}: no picture: {made.reason}")
            failed += 1
            continue
        target = _target(file, output, writes_into_folder)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(made.png)
        except OSError as exc:
            warn(f"preview: {target}: cannot write: {exc.strerror or exc}")
            failed += 1
            continue
        if as_json:
            record = {"file": str(file), "png": str(target), "bytes": len(made.png), "kind": made.kind,
                      "caption": made.caption, "source": made.source}
            stdout.file.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            stdout.file.write(f"{target}  ({len(made.png) / 1024:.1f} KB, {made.kind}): {made.caption}\n")
        stdout.file.flush()
    raise typer.Exit(1 if failed else 0)


def _target(file: Path, output: Path | None, into_folder: bool) -> Path:
    name = file.stem + ".png"
    if output is None:
        return Path(os.getcwd()) / name
    return output / name if into_folder else output


def _explain(file: Path, none: Any, found: Any, as_json: bool) -> None:
    if as_json:
        record: dict[str, Any] = {"file": str(file)}
        if found is not None:
            record.update(kind=found[0], caption=found[1].caption)
        else:
            record["none"] = [{"kind": k, "reason": r} for k, r in none.reasons]
        stdout.file.write(json.dumps(record, ensure_ascii=False) + "\n")
    elif found is not None:
        stdout.file.write(f"{file}: {found[0]}: {found[1].caption}\n")
    else:
        stdout.file.write(f"{file}: no picture\n" + "".join(f"  {k}: {r}\n" for k, r in none.reasons))
    stdout.file.flush()
