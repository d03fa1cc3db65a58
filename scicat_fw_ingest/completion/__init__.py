"""Completion sources: how sfi learns that a file is finished and may become a dataset.

Why a package: kafka-to-nexus announces a finished file with a wrdn message (``wrdn``, driven by
``listen``); other writers (SuperMuSR's nexus-writer, home-grown ones) send no such message and
only leave the file in a folder. Every source yields the same ``FinishedFile``, and the one ingest
core (``ingest.Ingestor``) turns it into a dataset, whatever said it was finished.

- ``folder``: a watched directory; a file is finished once it is *settled* (unchanged for a quiet
  period and openable by HDF5). inotify where the kernel has it, scanning otherwise.
- ``runs``: the writer's run starts (pl72) and stops (6s4t), matched to files by name, so that the
  run's metadata fills the dataset and a file whose run is still going is held back.
- ``settle``: whether a file a message named is complete yet (the writer's read-only mode, else size and
  mtime settled) and unchanged while it was read; used by the ingest core for every file.
- ``wrdn``: what one wrdn message asks for (ingest, skip, record a writer error), Kafka-free; the
  listener keeps the offsets and the worker pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: the ingest core imports ``completion.settle``, which must not import it back
    from ..ingest.run import RunInfo

__all__ = ["FinishedFile"]


@dataclass(frozen=True)
class FinishedFile:
    """A file that is complete: its local path, what the writer's messages said about it, and who said so."""

    path: str
    run: RunInfo
    #: e.g. ``watch:/archive`` or ``watch:/archive + runinfo/0@12`` (the run start's topic position).
    source: str
    #: The key its outcome is stored under (``state.file_identity``: for a watched file path + size + mtime
    #: of the version that settled, so a new file at a used path is not mistaken for the old one); None: the path.
    identity: str | None = None
