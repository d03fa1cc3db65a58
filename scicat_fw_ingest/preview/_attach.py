"""The ingest core's preview step: draw the file's picture and hand it to the sink, never failing the dataset.

Called by ``Ingestor.ingest`` in the worker (process) that ingested the file, after the dataset and its
datablock are stored: the listener's Kafka thread never draws. The file is read first (bounded; no picture,
no request), then the sink looks and calls ``make`` (the drawing) only when the dataset has no preview yet, so
a re-run over ingested files draws nothing. Any failure is one
warning line and the outcome "failed"; the dataset's own outcome is unchanged.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from . import NoPreview, Preview, PreviewError, draw, find_plot

if TYPE_CHECKING:
    from ..ingest.sink import Sink

log = logging.getLogger("sfi.preview")


def png_name(pid: str) -> str:
    """A file name for ``pid``'s preview, as the catalogue names the dataset's folder: readable, safe (pids contain
    '/') and distinct for distinct pids (a hash of the pid ends it)."""
    from ..catalogue import dataset_dirname

    return dataset_dirname(pid) + ".png"


#: "hidden" is said once per process: a non-admin account outside the datasets' groups meets it on every file
_hidden_said = False


def preview_dataset(sink: Sink | None, local: str, dataset: dict[str, Any], *, preview_dir: str | None) -> str:
    """"created"/"exists" (in the sink), "written" (only to ``preview_dir``), "none" (no picture applies),
    "hidden" (the account cannot read the dataset), "failed" (a warning was logged) or "off" (nowhere to go).

    The file is read first (bounded, cheap): a file without a picture costs no request. Then the sink looks
    and the picture is drawn only when the dataset has none yet, so a re-run draws nothing."""
    global _hidden_said
    pid = str(dataset.get("pid"))
    attach = sink.attach_preview if sink is not None else None
    if attach is None and not preview_dir:
        return "off"
    try:
        found = find_plot(local)
        if isinstance(found, NoPreview):
            # debug: a daemon ingesting metadata-only files would log this for every file (--explain says it too)
            log.debug("%s: no preview: %s", local, found.reason)
            return "none"

        def make() -> Preview:
            made = draw(local, *found)
            if preview_dir:
                os.makedirs(preview_dir, exist_ok=True)
                target = os.path.join(preview_dir, png_name(pid))
                with open(target + ".tmp", "wb") as out:
                    out.write(made.png)
                os.replace(target + ".tmp", target)
            return made

        if attach is None:
            make()
            return "written"
        status = str(attach(dataset, make))
    except (PreviewError, OSError) as exc:
        log.warning("%s: no preview (the dataset is stored): %s", local, _first_line(exc))
        return "failed"
    except Exception as exc:  # SciCat refused or stayed away, or a bug: never the dataset's failure
        log.warning("dataset %s: preview not attached (the dataset is stored): %s", pid, _first_line(exc))
        return "failed"
    if status == "hidden" and not _hidden_said:
        _hidden_said = True
        log.warning("dataset %s: preview not attached: this account may not read the dataset, so it cannot look "
                    "whether one is there and never sends one blindly (said once; give the account read rights "
                    "on the datasets' groups)", pid)
    return status


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
