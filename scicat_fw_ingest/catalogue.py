"""A local catalogue: the exact SciCat documents, kept on disk until a SciCat is there to take them.

Why: with no SciCat configured (the demo, a beamline without network to the catalogue, a site
still setting SciCat up) ``sfi listen`` must still record each finished file exactly once, in a
form that can be sent later without re-reading the files. ``CatalogueDir`` is an ``ingest.Sink`` like
``ScicatClient`` (``upsert``/``get_dataset``/``get_origdatablocks``/``attach_preview``/``ping``/``close``)
so the listener does not care which sink it has, and ``push_catalogue`` replays a directory into a
SciCat through ``client.upsert`` (idempotent: a second push reports "exists").

Layout: one directory per dataset, ``<readable slug of the pid>--<16 hex of sha256(pid)>`` (pids
contain '/'; the hash keeps names distinct even on case-insensitive file systems and after
truncation), holding ``dataset.json`` (the body of ``POST Datasets``) and ``origdatablock.json``
(the body of ``POST Datasets/{pid}/origdatablocks``), and when a preview was drawn ``preview.png`` with
``attachment.json`` (its caption; the PNG first, so the document's presence means both are whole).
Every file is written to a temporary name,
fsynced and renamed over the final name, then the directory is fsynced: a ``kill -9`` leaves
either the old document or the new one, never half of one. Upserts of one pid are serialised with
``flock`` on the dataset's directory, which excludes other threads and other processes alike.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._durable import fsync_dir, remove_stale_temps, write_atomic
from .errors import SfiError

if TYPE_CHECKING:
    from .ingest.sink import Sink

DATASET_FILE = "dataset.json"
DATABLOCK_FILE = "origdatablock.json"
#: the preview picture and its attachment document (caption, kind, source), written after the datablock
PREVIEW_FILE = "preview.png"
ATTACHMENT_FILE = "attachment.json"
_SLUG_MAX = 80


class CatalogueError(SfiError):
    """The catalogue directory or one of its documents cannot be used; names the path."""


def dataset_dirname(pid: str) -> str:
    """The directory name for ``pid``: readable, safe on any file system, distinct for distinct pids."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", pid).strip("._-")[:_SLUG_MAX] or "pid"
    return f"{slug}--{hashlib.sha256(pid.encode('utf-8')).hexdigest()[:16]}"


@dataclass
class CatalogueEntry:
    """One dataset directory as found on disk; ``error`` says what is wrong with it, if anything."""

    path: Path
    pid: str | None = None
    dataset: dict[str, Any] | None = None
    datablocks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    #: the stored preview (``attachment.json`` + ``preview.png``), None when there is none
    preview: StoredPreview | None = None


@dataclass
class StoredPreview:
    """A preview kept in the catalogue, in the shape ``ScicatClient.attach_preview`` sends."""

    caption: str
    png: bytes

    @property
    def data_uri(self) -> str:
        import base64

        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


class CatalogueDir:
    """A directory of SciCat documents with the client's upsert semantics; safe for threads and processes."""

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise CatalogueError(f"catalogue directory {self.path}: exists and is not a directory")
        if create:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CatalogueError(f"catalogue directory {self.path}: cannot create: "
                                     f"{exc.strerror or exc}") from None
        elif not self.path.is_dir():
            raise CatalogueError(f"catalogue directory {self.path}: not found")

    def __repr__(self) -> str:
        return f"CatalogueDir('{self.path}')"

    # -- the client interface ----------------------------------------------------------------------
    def upsert_uncertain(self) -> bool:
        """Never: a local write either completed (fsync, rename) or raised."""
        return False

    def upsert(self, dataset: dict[str, Any], datablock: dict[str, Any]) -> str:
        """Store ``dataset`` and its datablock once: "created", "exists" or "repaired" (a document was missing).

        As with SciCat, an existing dataset is never overwritten by a different body: the first
        write wins. A missing or unreadable document is (re)written and reported as "repaired".
        """
        pid = dataset.get("pid") if isinstance(dataset, dict) else None
        if not isinstance(pid, str) or not pid:
            raise ValueError("upsert needs a dataset with a 'pid' (the idempotency key)")
        if not isinstance(datablock, dict):
            raise ValueError("upsert needs the datablock as a dict")
        dataset_text = _dumps(dataset, f"dataset {pid}")
        datablock_text = _dumps(datablock, f"datablock of dataset {pid}")
        directory = self.path / dataset_dirname(pid)
        self._make_dir(directory)
        with _locked(directory):
            remove_stale_temps(directory)
            stored, _ = _read_json(directory / DATASET_FILE)
            if isinstance(stored, dict) and stored.get("pid") != pid:
                raise CatalogueError(f"catalogue {directory}: holds pid '{stored.get('pid')}', not '{pid}' "
                                     "(directory name collision)")
            had_dataset = isinstance(stored, dict)
            block, _ = _read_json(directory / DATABLOCK_FILE)
            had_block = isinstance(block, dict)
            if had_dataset and had_block:
                return "exists"
            # Dataset first, as SciCat needs it: a kill between the two writes leaves a dataset
            # without datablock, which the next upsert repairs.
            if not had_dataset:
                _write_atomic(directory, DATASET_FILE, dataset_text)
            if not had_block:
                _write_atomic(directory, DATABLOCK_FILE, datablock_text)
            return "created" if not (had_dataset or had_block) else "repaired"

    def attach_preview(self, dataset: dict[str, Any], make: Any) -> str:
        """Store ``make()``'s preview beside the dataset once: "created", "exists" or "none" (no picture)."""
        pid = dataset.get("pid") if isinstance(dataset, dict) else None
        if not isinstance(pid, str) or not pid:
            raise ValueError("attach_preview needs a dataset with a 'pid'")
        directory = self.path / dataset_dirname(pid)
        self._make_dir(directory)
        with _locked(directory):
            doc, _ = _read_json(directory / ATTACHMENT_FILE)
            if isinstance(doc, dict) and (directory / PREVIEW_FILE).is_file():
                return "exists"
            preview = make()
            if preview is None:
                return "none"
            _write_atomic_bytes(directory, PREVIEW_FILE, preview.png)
            document = {"caption": preview.caption, "kind": getattr(preview, "kind", None),
                        "source": getattr(preview, "source", None), "file": PREVIEW_FILE}
            _write_atomic(directory, ATTACHMENT_FILE, _dumps(document, f"preview of dataset {pid}"))
            return "created"

    def get_dataset(self, pid: str) -> dict[str, Any] | None:
        """The stored dataset body, ``None`` when absent; an unreadable document is a CatalogueError."""
        path = self.path / dataset_dirname(pid) / DATASET_FILE
        doc, problem = _read_json(path)
        if problem == "missing":
            return None
        if problem:
            raise CatalogueError(f"catalogue document {path}: {problem}")
        return doc if doc.get("pid") == pid else None

    def get_origdatablocks(self, pid: str) -> list[dict[str, Any]]:
        if self.get_dataset(pid) is None:
            return []
        path = self.path / dataset_dirname(pid) / DATABLOCK_FILE
        doc, problem = _read_json(path)
        if problem == "missing":
            return []
        if problem:
            raise CatalogueError(f"catalogue document {path}: {problem}")
        return [doc]

    def ping(self) -> None:
        """Raise CatalogueError unless the directory is there and writable (the /health check)."""
        if not self.path.is_dir():
            raise CatalogueError(f"catalogue directory {self.path}: not found")
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise CatalogueError(f"catalogue directory {self.path}: not writable")

    def close(self) -> None:
        """Nothing to release (no file stays open between calls); present so the sink is interchangeable."""

    # -- reading the whole catalogue ---------------------------------------------------------------
    def entries(self) -> Iterator[CatalogueEntry]:
        """Every dataset directory in name order, unreadable ones included with their ``error``."""
        try:
            names = sorted(p.name for p in self.path.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError as exc:
            raise CatalogueError(f"catalogue directory {self.path}: cannot list: {exc.strerror or exc}") from None
        for name in names:
            entry = _entry(self.path / name)
            if entry is not None:
                yield entry

    def iter_documents(self) -> Iterator[tuple[str, dict[str, Any], list[dict[str, Any]]]]:
        """(pid, dataset, [datablocks]) per dataset in a stable order; CatalogueError at an unreadable one."""
        for entry in self.entries():
            if entry.error or entry.pid is None or entry.dataset is None:
                raise CatalogueError(entry.error or f"catalogue {entry.path}: incomplete")
            yield entry.pid, entry.dataset, entry.datablocks

    # -- internals ---------------------------------------------------------------------------------
    def _make_dir(self, directory: Path) -> None:
        try:
            directory.mkdir()
        except FileExistsError:
            return
        except OSError as exc:
            raise CatalogueError(f"catalogue directory {directory}: cannot create: {exc.strerror or exc}") from None
        fsync_dir(self.path)  # the new directory entry survives a crash too


def _entry(directory: Path) -> CatalogueEntry | None:
    """The entry for one directory; ``None`` for one holding no document (a writer died right after mkdir)."""
    entry = CatalogueEntry(directory)
    dataset_path, block_path = directory / DATASET_FILE, directory / DATABLOCK_FILE
    dataset, problem = _read_json(dataset_path)
    if problem == "missing" and not block_path.exists():
        return None
    if problem:
        entry.error = f"{dataset_path}: {problem}"
        return entry
    pid = dataset.get("pid")
    if not isinstance(pid, str) or not pid:
        entry.error = f"{dataset_path}: no 'pid' string in the dataset"
        return entry
    entry.pid, entry.dataset = pid, dataset
    if dataset_dirname(pid) != directory.name:
        entry.error = f"{dataset_path}: pid '{pid}' does not belong in directory {directory.name}"
        return entry
    block, problem = _read_json(block_path)
    if problem:
        entry.error = f"{block_path}: {problem}" + (" (the dataset was stored but its datablock not)"
                                                    if problem == "missing" else "")
        return entry
    entry.datablocks = [block]
    attachment, problem = _read_json(directory / ATTACHMENT_FILE)
    if isinstance(attachment, dict):
        try:
            png = (directory / PREVIEW_FILE).read_bytes()
        except OSError:
            png = b""
        if png.startswith(b"\x89PNG") and isinstance(attachment.get("caption"), str):
            entry.preview = StoredPreview(attachment["caption"], png)
    return entry


def _read_json(path: Path) -> tuple[Any, str | None]:
    """(document, None), or (None, "missing"), or (None, what is wrong) — never raises for bad content."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "missing"
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if not isinstance(doc, dict):
        return None, f"expected a JSON object, found {type(doc).__name__}"
    return doc, None


def _dumps(doc: dict[str, Any], what: str) -> str:
    try:
        return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise CatalogueError(f"{what}: cannot be stored as JSON: {exc}") from None


def _write_atomic(directory: Path, name: str, text: str) -> None:
    _write_atomic_bytes(directory, name, text.encode("utf-8"))


def _write_atomic_bytes(directory: Path, name: str, data: bytes) -> None:
    """``_durable.write_atomic``: after a crash the document is whole or absent."""
    try:
        write_atomic(directory, name, data)
    except OSError as exc:
        raise CatalogueError(f"catalogue document {directory / name}: cannot write: {exc.strerror or exc}") from None


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive flock on the directory: each open is its own lock owner, so threads exclude each other too."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise CatalogueError(f"catalogue directory {directory}: cannot open: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# -- pushing a catalogue into SciCat ---------------------------------------------------------------

@dataclass
class PushResult:
    """The outcome for one stored dataset: created/exists/repaired, "ready" in a dry run, or "failed"."""

    pid: str | None
    status: str
    error: str | None = None
    path: str = ""

    def to_jsonable(self) -> dict[str, Any]:
        return {"pid": self.pid, "status": self.status, "error": self.error, "path": self.path}


def push_catalogue(directory: str | Path | CatalogueDir, client: Sink | None, *,
                   dry_run: bool = False, results: list[PushResult] | None = None) -> list[PushResult]:
    """Send every stored dataset with its datablock through ``client.upsert``; one result per dataset.

    A corrupt or incomplete document gives a "failed" result naming the file and the push goes on.
    Once SciCat stays unreachable (a retryable error after the client's own retries), the remaining
    datasets are reported failed without being tried: waiting out the backoff for each would only
    delay the same answer. A dry run reads and checks every document and contacts nobody.
    Results are appended to ``results`` (when given) as they come, so that after a Ctrl-C the caller
    still knows what was done.
    """
    catalogue = directory if isinstance(directory, CatalogueDir) else CatalogueDir(directory, create=False)
    if client is None and not dry_run:
        raise ValueError("push_catalogue needs a client unless dry_run")
    results = [] if results is None else results  # the caller's list holds what was done if interrupted
    unreachable: str | None = None
    for entry in catalogue.entries():
        where = str(entry.path)
        if entry.error or entry.dataset is None or not entry.datablocks:
            results.append(PushResult(entry.pid, "failed", entry.error or f"{where}: incomplete", where))
            continue
        if dry_run:
            results.append(PushResult(entry.pid, "ready", None, where))
            continue
        if unreachable is not None:
            results.append(PushResult(entry.pid, "failed", f"not tried: {unreachable}", where))
            continue
        try:
            status = client.upsert(entry.dataset, entry.datablocks[0])  # type: ignore[union-attr]
        except SfiError as exc:
            results.append(PushResult(entry.pid, "failed", str(exc), where))
            if getattr(exc, "retryable", False):
                unreachable = str(exc)
            continue
        results.append(PushResult(entry.pid, status, None, where))
        _push_preview(client, entry)
    return results


def _push_preview(client: Any, entry: CatalogueEntry) -> None:
    """The stored preview after its dataset (once: the client looks first); a failure is a warning only."""
    attach = getattr(client, "attach_preview", None)
    if entry.preview is None or entry.dataset is None or not callable(attach):
        return
    stored = entry.preview
    try:
        attach(entry.dataset, lambda: stored)
    except SfiError as exc:
        import logging

        logging.getLogger("sfi.preview").warning("dataset %s: preview not attached (the dataset is): %s",
                                                 entry.pid, str(exc).splitlines()[0] if str(exc) else exc)
