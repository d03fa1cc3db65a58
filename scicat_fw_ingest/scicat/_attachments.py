"""One preview attachment per dataset, through API v3 or v4, exactly once under retries, kills and re-runs.

What the real backend does (4.5.0 and 5.1.0, observed; ``docs/scicat.md#attachments``):
- v3: ``POST /api/v3/Datasets/{pid}/attachments`` with ``thumbnail``, ``caption`` (required), ``ownerGroup``
  (required, then replaced by the dataset's) and ``accessGroups``; a client-given ``id`` is *ignored* (a new
  uuid each time), so a second POST makes a second attachment. ``GET`` on the same route lists them (also
  those made through v4); 403 for an account that may not read the dataset.
- v4: ``POST /api/v4/attachments`` with ``aid`` (client-chosen, stored as the id), ``isPublished``
  (required), ``relationships: [{targetId: pid, targetType: "dataset"}]``; a second POST of the same ``aid``
  is refused (a 500 on both versions: the database's duplicate key, so it is read as "unknown" and answered
  by a look): duplicates are impossible. A non-admin account gets 403 there, so the v3 route is tried next
  (as for datablocks). Bodies up to ~15 MB are taken, ~17 MB is a 500.

So: the ``aid`` is deterministic (uuid5 of the pid), and every attach holds the pid's lock (threads and
processes, ``PreviewJournal``) and *looks first* (one GET of the v3 list: our ``aid`` or our caption
prefix). A POST whose outcome is unknown (timeout, dropped connection, 5xx) is never re-sent blindly: the
transport waits ``grace`` and looks again; a process killed mid-POST leaves a note, and the next holder
waits out the grace period from it before looking. An account that cannot read the dataset cannot look:
it attaches nothing (a warning), rather than risk a second picture.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ._journal import LockedNote
from ._transport import ScicatError, pid_path

if TYPE_CHECKING:
    import requests

#: uuid5 namespace of preview attachment ids: the same pid gives the same ``aid`` on every host and run.
PREVIEW_NAMESPACE = uuid.UUID("5f3c1c7e-1b0e-4f57-9d3a-6b1f2f5e22a1")
#: What the caption of sfi's previews starts with (``preview.CAPTION_PREFIX``; repeated here so that the
#: SciCat client does not import the drawing package).
CAPTION_PREFIX = "Preview (sfi): "
#: A thumbnail larger than this is not sent (sfi's are tens of KB; the backend refuses ~16 MB bodies).
MAX_THUMBNAIL = 4 * 1024 * 1024

PRESENT, ABSENT, HIDDEN = "present", "absent", "hidden"
#: set on a client whose account the v4 route refused (403: not an admin): it uses the v3 route from then on
_V4_REFUSED = "_sfi_v4_attachments_refused"


class PreviewLike(Protocol):
    """What ``attach_preview`` needs of a drawn preview (``preview.Preview``)."""

    caption: str

    @property
    def data_uri(self) -> str: ...


class _Client(Protocol):
    base: str
    lock_dir: Path
    grace: float

    def exchange(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None,
                 grace: float = 0.0, already_done: Callable[[], bool] | None = None
                 ) -> tuple[requests.Response | None, int]: ...
    def json(self, resp: requests.Response | None, method: str, path: str) -> Any: ...
    def error(self, method: str, path: str, resp: requests.Response | None) -> ScicatError: ...


def preview_aid(pid: str) -> str:
    """The attachment id of ``pid``'s preview (v4 ``aid``)."""
    return str(uuid.uuid5(PREVIEW_NAMESPACE, pid))


def look(client: _Client, pid: str) -> str:
    """``PRESENT`` when the dataset has sfi's preview, ``ABSENT``, or ``HIDDEN`` (this account may not read it)."""
    path = f"/api/v3/Datasets/{pid_path(pid)}/attachments"
    resp, _ = client.exchange("GET", path)
    if resp is not None and resp.status_code == 403:
        return HIDDEN
    if resp is not None and resp.status_code == 404:
        return ABSENT
    found = client.json(resp, "GET", path)
    aid = preview_aid(pid)
    for item in found if isinstance(found, list) else []:
        if not isinstance(item, dict):
            continue
        if aid in (item.get("aid"), item.get("id"), item.get("_id")):
            return PRESENT
        if str(item.get("caption") or "").startswith(CAPTION_PREFIX):
            return PRESENT
    return ABSENT


def bodies(api: str, dataset: dict[str, Any], preview: PreviewLike) -> list[tuple[str, dict[str, Any]]]:
    """(path, body) to POST, in order (the next one on a 403): v4 with its ``aid`` first for a v4 client."""
    pid = str(dataset["pid"])
    common = {"thumbnail": preview.data_uri, "caption": preview.caption,
              "ownerGroup": str(dataset.get("ownerGroup") or ""),
              "accessGroups": [str(g) for g in dataset.get("accessGroups") or []]}
    v3 = (f"/api/v3/Datasets/{pid_path(pid)}/attachments", common)
    if api != "v4":
        return [v3]
    v4 = ("/api/v4/attachments", {**common, "aid": preview_aid(pid), "isPublished": False,
                                  "relationships": [{"targetId": pid, "targetType": "dataset",
                                                     "relationType": "is attached to"}]})
    return [v4, v3]


def attach_preview(client: _Client, api: str, dataset: dict[str, Any],
                   make: Callable[[], PreviewLike | None], pid_lock: Any) -> str:
    """Attach the dataset's preview once: "created", "exists", "none" (``make`` found no picture) or "hidden"
    (this account cannot read the dataset, so cannot look: nothing sent). ``make`` is called only when the
    preview is absent (a re-run draws nothing). ScicatError when SciCat refused it or stayed unreachable."""
    pid = str(dataset["pid"])
    with pid_lock(pid), PreviewJournal(client.lock_dir, client.base, pid) as journal:
        journal.wait_grace(client.grace)
        seen = look(client, pid)
        if seen != ABSENT:
            journal.settled()
            return "exists" if seen == PRESENT else "hidden"
        preview = make()
        if preview is None:
            journal.settled()
            return "none"
        if len(preview.data_uri) > MAX_THUMBNAIL:
            journal.settled()
            raise ScicatError(f"dataset {pid}: preview of {len(preview.data_uri):,} bytes is larger than "
                              f"{MAX_THUMBNAIL:,}: not sent")
        routes = bodies(api, dataset, preview)
        if len(routes) > 1 and getattr(client, _V4_REFUSED, False):
            routes = routes[1:]  # this account got a 403 on v4 before: do not ask again for every dataset
        for i, (path, body) in enumerate(routes):
            journal.mark_sending()
            try:
                resp, _ = client.exchange("POST", path, body=body, grace=client.grace,
                                          already_done=lambda: look(client, pid) == PRESENT)
            except ScicatError as exc:
                if exc.status is not None and exc.status != 504:  # answered: the server is done with it
                    journal.mark_sending(at=time.time() - client.grace)
                raise
            if resp is None or resp.status_code in (200, 201):
                journal.settled()
                return "created"
            if resp.status_code == 409:  # our aid is there already (a backend that maps the duplicate key)
                journal.settled()
                return "exists"
            journal.settled()  # refused for sure: nothing stored
            if resp.status_code == 403 and i + 1 < len(routes):
                setattr(client, _V4_REFUSED, True)
                continue
            raise client.error("POST", path, resp)
        raise AssertionError("unreachable: the last route returns or raises")


class PreviewJournal(LockedNote):
    """The pid's preview lock across processes (``fcntl``), with a note of an attachment POST whose answer never
    came. A file of its own (``<hash>.preview.lock`` beside the datablock journal's): the two notes never mix.
    """

    _kind = "preview"

    def __enter__(self) -> PreviewJournal:
        raw = self._lock()
        try:
            self.pending_since = float(json.loads(raw)["sent"]) if raw else None
        except (ValueError, TypeError, KeyError):
            self.pending_since = None
        self._done = self.pending_since is None  # an unreadable note is no note
        return self

    def mark_sending(self, at: float | None = None) -> None:
        self.pending_since = time.time() if at is None else at
        self._write({"sent": self.pending_since, "pid_of_sender": os.getpid()})

