"""The one ingest path shared by ``sfi ingest-file`` and ``sfi listen``: a finished file becomes a dataset.

Why one core: a cron backfill and the live daemon must produce the very same dataset (same pid,
same fields) for the same file, so that re-running either never creates a duplicate. The file is
the source of truth; what Kafka said about it (``RunInfo``) only fills gaps. ``Ingestor.ingest``
never raises for expected failures: it returns a result that says whether retrying may help, so a
daemon can requeue and a batch can move on.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._logging import scrub
from ..completion.settle import AT_ONCE, Completion, StillWriting, Stopped, Version, wait_until_complete
from ..config import Config
from ..errors import ConfigError, SfiError
from ..mapping import (
    Context,
    LookupNeeded,
    Mapped,
    ProfileSet,
    ScicatLookup,
    check_defaults,
    check_timezone,
    map_dataset,
    pick_profile,
    require_complete,
)
from ..mapping.sources import to_iso
from ..nexus.reader import HDF5_LOCK, NexusError, open_snapshot, retry_while_locked
from .datablock import ALGORITHMS, make_datablock
from .run import IngestResult, RunInfo
from .sink import Sink

log = logging.getLogger("sfi.ingest")


class _Failed(Exception):
    def __init__(self, message: str, retryable: bool, *, file_problem: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.file_problem = file_problem


class _ChangedWhileRead(Exception):
    """The file changed while it was read and the read failed: what failed was not the final file."""

    def __init__(self, shown: str, before: Version, after: Version, error: str, waited: float) -> None:
        super().__init__(error)
        self.shown, self.before, self.after, self.waited = shown, before, after, waited


class _Rejected(Exception):
    """The path breaks a data-root rule: the file is never opened."""


#: OS errors no amount of waiting cures: the file fails at once instead of after the deadline.
PERMANENT_ERRNOS = frozenset({errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EINVAL, errno.EISDIR})
_GLOB_CHARS = set("*?[")
#: Mapping passes per file: a first one, and one after each fetched lookup (proposal, instrument, sample).
_LOOKUP_PASSES = 4
#: Reads of a file that keeps changing while it is read (each after it settled again) before it fails.
MAX_READS = 4


def explicit_roots(arguments: Sequence[str]) -> list[str]:
    """The data roots implied by paths an operator typed (``ingest-file``): each file or folder, or a glob's fixed part.

    Why: a backfill of a folder must not follow a symlink out of it, but what the operator named is trusted.
    """
    roots = []
    for given in arguments:
        if _GLOB_CHARS & set(given) and not os.path.exists(given):
            fixed = given[:min(given.index(c) for c in _GLOB_CHARS if c in given)]
            given = fixed if fixed.endswith("/") else os.path.dirname(fixed)
        roots.append(given or ".")
    return roots


@dataclass
class _Prepared:
    local: str
    mapped: Mapped
    facts: dict[str, Any]
    #: the file as it was when it was judged complete and read (compared with a stat after the checksums)
    version: Version | None = None
    shown: str = ""
    evidence: str = AT_ONCE
    waited: float = 0.0


class Ingestor:
    """Turns finished files into datasets in a ``Sink`` (SciCat), or only builds them (``sink=None``)."""

    def __init__(self, cfg: Config, sink: Sink | None, *, checksum: str | None = None,
                 profile: str | None = None, explicit_paths: Sequence[str] | None = None,
                 require_roots: bool = False, lookup_from: Any = None) -> None:
        """Paths are checked against ``data_roots`` (see ``check_path``).

        ``explicit_paths``: what an operator named on a command line (roots too; relative names allowed).
        ``require_roots``: the paths come from others (wrdn messages, a watched folder): without any configured
        root every file is rejected, and relative paths always are. Otherwise, with no root configured, the
        caller named the file itself and it is not restricted.
        ``lookup_from``: a read-only SciCat client for ``scicat:`` profile sources when the sink is none.
        """
        self.cfg = cfg
        self.accept_relative = explicit_paths is not None or not require_roots
        roots = self.configured_roots(cfg, explicit_paths)
        self.data_roots: list[str] | None = roots if roots or require_roots else None
        self.sink = sink
        # scicat: profile sources ask SciCat (proposal, instrument, sample) through the sink, or through
        # ``lookup_from`` (a read-only client, e.g. for --explain); a local catalogue cannot answer.
        self.lookup = ScicatLookup.for_sink(lookup_from if lookup_from is not None else sink)
        self.checksum = checksum or cfg.ingest.checksum
        if self.checksum not in ALGORITHMS:
            raise ConfigError(f"checksum '{self.checksum}': must be one of {', '.join(ALGORITHMS)}")
        self.profile_name = profile or cfg.ingest.profile
        check_defaults(cfg.defaults)
        check_timezone(cfg.ingest.timezone)
        self.profiles = ProfileSet(cfg.ingest.profile_dirs)
        if self.profile_name:
            self.profiles.get(self.profile_name)  # an unknown or broken profile fails now, not per file

    def close(self) -> None:
        """Close the sink (``Ingests.close``: the daemons release an in-process and a worker-process ingestor alike)."""
        if self.sink is not None:
            self.sink.close()

    # -- paths ---------------------------------------------------------------------------------
    @staticmethod
    def configured_roots(cfg: Config, explicit_paths: Sequence[str] | None) -> list[str]:
        """``[ingest] data_roots``, else the local sides of ``path_map`` (+ the cwd and the named paths for a CLI)."""
        if cfg.ingest.data_roots:
            roots = list(cfg.ingest.data_roots)
        else:
            roots = [local for _writer, local in cfg.ingest.path_map]
            if explicit_paths is not None:
                roots += [os.getcwd(), *explicit_roots(explicit_paths)]
        return sorted({os.path.realpath(r) for r in roots})

    def check_path(self, writer_path: str, local: str) -> str:
        """The real path of ``local`` when it lies inside a data root; ``_Rejected`` naming the rule otherwise.

        Nothing is opened: ``realpath`` only reads directory entries and links, so a FIFO or a device
        outside the roots is never touched.
        """
        if not os.path.isabs(writer_path) and not self.accept_relative:
            raise _Rejected(f"{writer_path}: rejected: a relative writer path (the writer must name absolute paths)")
        if self.data_roots is None:  # unrestricted: the caller named the file (see __init__)
            return os.path.realpath(local)
        if not self.data_roots:
            raise _Rejected(f"{writer_path}: rejected: no data root configured ([ingest] data_roots or path_map)")
        real = os.path.realpath(local)
        for root in self.data_roots:
            if real == root or real.startswith(root.rstrip("/") + "/"):
                return real
        shown = local if real == local else f"{local} (resolves to {real})"
        raise _Rejected(f"{shown}: rejected: outside the data roots ({', '.join(self.data_roots)})")

    def local_path(self, writer_path: str) -> str:
        """The writer's path mapped through ``[ingest] path_map`` (longest matching prefix), made absolute."""
        best: tuple[str, str] | None = None
        for writer_prefix, local_prefix in self.cfg.ingest.path_map:
            stem = writer_prefix.rstrip("/")
            matches = writer_path == stem or writer_path.startswith(stem + "/")
            if matches and (best is None or len(stem) > len(best[0])):
                best = (stem, local_prefix.rstrip("/"))
        path = writer_path if best is None else best[1] + writer_path[len(best[0]):]
        return os.path.abspath(path)

    # -- the one path --------------------------------------------------------------------------
    def ingest(self, writer_path: str, run: RunInfo | None = None, *, wait_missing: float = 0.0,
               skip_existing: bool = True) -> IngestResult:
        """Ingest one file; never raises for expected failures (see ``IngestResult.retryable``)."""
        result = IngestResult(writer_path, None, "failed")
        try:
            waited, must_settle, last_shown, looked = 0.0, False, writer_path, False
            for reads in range(1, MAX_READS + 1):
                try:
                    prepared = self._prepare(writer_path, run, wait_missing, must_settle=must_settle)
                except _ChangedWhileRead as changed:
                    log.info("%s: changed while it was read (%s; the read said: %s): reading it again once it "
                             "settled (read %d of %d)", changed.shown, changed.before.describe_change(changed.after),
                             changed, reads + 1, MAX_READS)
                    must_settle, last_shown, waited = True, changed.shown, waited + changed.waited
                    continue
                waited += prepared.waited
                result.completion = Completion(self.cfg.ingest.complete_when, prepared.evidence, waited, reads)
                dataset = prepared.mapped.dataset
                result.pid, result.dataset = dataset["pid"], dataset
                if not looked and self.sink is not None and skip_existing:
                    looked = True
                    if self._already_there(dataset["pid"]):
                        result.status = "exists"
                        result.preview = self._preview(prepared.local, dataset)  # one a killed run owed
                        return result
                try:
                    datablock = make_datablock([prepared.local], dataset["sourceFolder"], self.checksum)
                    after = Version.of(os.stat(prepared.local))
                except OSError as exc:
                    raise _Failed(f"{prepared.local}: cannot read for the checksum: {exc.strerror or exc}",
                                  True) from None
                assert prepared.version is not None
                if after.same_file(prepared.version):
                    break
                # The writer was not done (no locks across hosts): what was read may not be the final file.
                log.info("%s: changed while it was read (%s): reading it again once it settled (read %d of %d)",
                         prepared.shown, prepared.version.describe_change(after), reads + 1, MAX_READS)
                must_settle, last_shown = True, prepared.shown
            else:
                raise _Failed(f"{last_shown}: still being written: it changed while it was read, "
                              f"{MAX_READS} times", True)
            if waited > 0 or reads > 1:
                log.info("%s: complete (%s) after waiting %.1f s, %d read(s)", prepared.shown, prepared.evidence,
                         waited, reads)
            else:
                log.debug("%s: complete (%s), no wait", prepared.shown, prepared.evidence)
            result.origdatablock = datablock
            if self.sink is None:
                result.status = "dry-run"
                result.preview = self._preview(prepared.local, dataset)
                return result
            try:
                result.status = self.sink.upsert(dataset, datablock)
            finally:
                result.verify = self.sink.upsert_uncertain()
            result.preview = self._preview(prepared.local, dataset)
            return result
        except _Rejected as exc:
            result.status, result.error = "rejected", str(exc)
            return result
        except _Failed as exc:
            result.error, result.retryable, result.file_problem = str(exc), exc.retryable, exc.file_problem
        except SfiError as exc:  # ScicatError, MappingError, ProfileError ...
            result.error = f"{writer_path}: {exc}" if writer_path not in str(exc) else str(exc)
            result.retryable = bool(getattr(exc, "retryable", False))
            result.auth = bool(getattr(exc, "auth", False))
        except Exception as exc:  # a bug must not stop a batch or the daemon; say it is one
            result.error = f"{writer_path}: internal error: {type(exc).__name__}: {exc}"[:500]
        result.status = "failed"
        result.error = scrub(result.error) if result.error else result.error  # a server may echo a token
        return result

    def explain(self, writer_path: str, run: RunInfo | None = None) -> list[tuple[str, object, str]]:
        """(field, value, origin) of everything the dataset would hold; raises ``SfiError`` when unreadable."""
        try:
            prepared = self._prepare(writer_path, run, 0.0, complete=False, judge=False)
        except (_Failed, _Rejected) as exc:
            raise SfiError(str(exc)) from None
        mapped = prepared.mapped
        rows: list[tuple[str, object, str]] = [
            ("(profile)", mapped.profile, mapped.reason or "selected: first profile that fits the file"),
            ("(file)", prepared.local, "writer path " + writer_path if prepared.local != writer_path else "given"),
        ]
        rows.extend(mapped.origins)
        rows.append(("origdatablock.chkAlg", self.checksum, "--checksum or [ingest] checksum"))
        rows.append(("origdatablock.size", prepared.facts["size"], "file:size"))
        if self.cfg.ingest.preview:
            rows.append(_explain_preview(prepared.local))
        return rows

    # -- steps ---------------------------------------------------------------------------------
    def _prepare(self, writer_path: str, run: RunInfo | None, wait_missing: float,
                 *, complete: bool = True, judge: bool = True, must_settle: bool = False) -> _Prepared:
        """Find the file, wait until it is complete (``judge``: [ingest] complete_when), read and map it."""
        local = self.local_path(writer_path)
        self.check_path(writer_path, local)
        shown = local if local == os.path.abspath(writer_path) else f"{local} (writer path {writer_path})"
        self._wait_for(local, shown, wait_missing)
        ing = self.cfg.ingest
        try:
            _judged, evidence, waited = wait_until_complete(
                local, ing.complete_when if judge else AT_ONCE, settle_seconds=ing.settle_seconds,
                deadline=ing.complete_wait, shown=shown, must_settle=must_settle)
            st = os.stat(local)  # the version read: compared with a stat after the checksums
        except StillWriting as exc:
            raise _Failed(str(exc), True) from None
        except Stopped as exc:
            raise _Failed(str(exc), True, file_problem=False) from None
        except OSError as exc:
            raise _Failed(f"{shown}: cannot stat: {exc.strerror or exc}", exc.errno not in PERMANENT_ERRNOS) from None
        version = Version.of(st)
        deadline = time.monotonic() + max(0.0, ing.file_wait)
        facts = _file_facts(local, writer_path, st)
        run = run or RunInfo()

        lookup = self.lookup

        def read_and_map() -> tuple[Any, Any]:
            # The file is open only while the profile reads; SciCat lookups answer from their cache here
            # (a miss raises LookupNeeded: fetched below with the lock released, then mapped again).
            with HDF5_LOCK, open_snapshot(local) as snapshot, lookup.cache_only() if lookup else nullcontext():
                ctx = Context(snapshot=snapshot, config=self.cfg, files=facts, run=run.as_sources(),
                              metadata=run.metadata, wrdn=run.wrdn_metadata, lookup=lookup)
                profile = pick_profile(self.profiles, ctx, explicit=self.profile_name)
                return profile, map_dataset(profile, ctx)

        try:
            try:
                for _ in range(_LOOKUP_PASSES):
                    try:
                        _profile, mapped = retry_while_locked(read_and_map, deadline)
                        break
                    except LookupNeeded as need:
                        assert lookup is not None
                        lookup.fetch(need.record, need.key)
                else:
                    raise _Failed(f"{shown}: SciCat lookups did not settle in {_LOOKUP_PASSES} passes", True)
            except FileNotFoundError:
                raise _Failed(f"{shown}: file not found (it disappeared)", True) from None
            except NexusError as exc:
                raise _Failed(str(exc), exc.retryable) from None
            except OSError as exc:
                raise _Failed(f"{shown}: cannot read: {exc.strerror or exc}",
                              exc.errno not in PERMANENT_ERRNOS) from None
            if complete:
                require_complete(mapped, local)
        except (_Failed, SfiError) as exc:
            # A half-written file may not open, or lack what the profile requires: if it changed meanwhile,
            # that says nothing about the final file, which is read again once it settled.
            try:
                now = Version.of(os.stat(local))
            except OSError:
                raise exc from None
            if judge and not now.same_file(version):
                raise _ChangedWhileRead(shown, version, now, str(exc), waited) from None
            raise
        return _Prepared(local, mapped, facts, version, shown, evidence, waited)

    @staticmethod
    def _wait_for(local: str, shown: str, wait_missing: float) -> None:
        deadline = time.monotonic() + max(0.0, wait_missing)
        delay = 0.1
        while True:
            try:
                st = os.stat(local)  # stat, never open: a FIFO or device must not block or be read
                break
            except FileNotFoundError:
                pass
            except OSError as exc:  # a name too long, a link loop...: waiting does not help
                raise _Failed(f"{shown}: {exc.strerror or exc}", exc.errno not in PERMANENT_ERRNOS) from None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waited = f" after waiting {wait_missing:g} s" if wait_missing > 0 else ""
                raise _Failed(f"{shown}: file not found{waited}", True)
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 2.0)
        if not stat.S_ISREG(st.st_mode):
            raise _Failed(f"{shown}: not a regular file", False)

    def _preview(self, local: str, dataset: dict[str, Any]) -> str | None:
        """The picture after the dataset is stored (issue 22); its failure is a warning, never the dataset's."""
        if not self.cfg.ingest.preview:
            return None
        from ..preview._attach import preview_dataset

        return preview_dataset(self.sink, local, dataset, preview_dir=self.cfg.ingest.preview_dir)

    def _already_there(self, pid: str) -> bool:
        """The dataset exists with its file list (a dataset without one is repaired by ``upsert``)."""
        assert self.sink is not None
        existing = self.sink.get_dataset(pid)
        if existing is None:
            return False
        return bool(self.sink.get_origdatablocks(pid))


def _explain_preview(local: str) -> tuple[str, object, str]:
    """The ``(preview)`` row of ``--explain``: the caption and its kind, or why no picture applies."""
    from ..preview import NoPreview, PreviewError, find_plot

    try:
        found = find_plot(local)
    except PreviewError as exc:
        return ("(preview)", None, f"unreadable: {exc}")
    if isinstance(found, NoPreview):
        return ("(preview)", None, f"none: {found.reason}")
    kind, plot = found
    return ("(preview)", plot.caption, kind)


def _file_facts(local: str, writer_path: str, st: os.stat_result) -> dict[str, Any]:
    path = Path(local)
    return {"path": local, "name": path.name, "stem": path.stem, "dir": str(path.parent),
            "size": int(st.st_size), "mtime": to_iso(st.st_mtime * 1000), "writer_path": writer_path}
