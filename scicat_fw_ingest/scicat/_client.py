"""The SciCat client every ingest path shares: pyscicat's client made safe for unattended use.

Why a subclass of pyscicat: its other methods (``datasets_find`` ...) keep working, routed through our
transport (``_send_to_scicat``). The rest is ours because pyscicat's models disagree with the server
(``chkAlg`` typed int, ``DataFile.time`` optional) and encodes pids with ``quote_plus``.

Exactly one datablock per dataset (``upsert``):
1. hold the pid's lock across threads *and* processes (``_journal.PidJournal``); after an earlier
   holder died during a datablock POST, wait the grace period before looking;
2. POST the dataset (409 = exists, then look: GET it); a client whose last dataset already existed
   (a re-run over ingested files) or whose journal owes this pid something looks first instead, so a
   new dataset costs 2 requests and an existing one 2 as well (in a run of either kind);
3. a new dataset gets its datablock; an existing one gets it only when a look finds none;
4. a datablock POST whose outcome is unknown (timeout, dropped connection, 5xx — the backend may have
   stored it) is never re-sent blindly: wait ``grace``, look, and send again only when absent.
An account that cannot read the dataset (non-admin, dataset of a group it is not in: 403) cannot look:
then a 409 counts as "exists" unless this host's journal says a datablock is still owed, and an
unknown datablock outcome counts as stored (never a duplicate; the warning names the missing right).
``[scicat] access_group`` (a group of sfi's own account, added to every dataset's accessGroups) lets
such an account look, which is what keeps the guarantee across hosts.

The journal is one host's; across hosts the guarantee is convergence: a look that finds duplicate
identical datablocks (a POST the server stored later than every wait) deletes the extras and corrects
the dataset's size (``_converge.repair_duplicates``), and ``upsert_uncertain`` tells the caller when a
datablock's fate was not known for sure, so that it looks again later (the listener's ``verify_after``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from pyscicat.client import ScicatClient as _PyScicatClient

from ..errors import ConfigError
from ._converge import repair_duplicates
from ._journal import PidJournal, default_lock_dir
from ._payload import sanitize_dataset
from ._transport import ScicatError, Transport, safe_url
from .v3 import V3
from .v4 import V4

log = logging.getLogger("sfi.scicat")

_HIDDEN = "hidden"  # the dataset exists or not, but this account may not read it


class Api(Protocol):
    """What differs between API versions: paths and payload shapes (``v3.V3``, ``v4.V4``)."""

    name: str
    root: str

    def dataset_body(self, dataset: dict[str, Any]) -> dict[str, Any]: ...
    def create_dataset_path(self) -> str: ...
    def dataset_path(self, pid: str) -> str: ...
    def datablock_posts(self, pid: str, datablock: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]: ...
    def datablocks_query(self, pid: str) -> tuple[str, dict[str, str] | None]: ...
    def datablock_path(self, block_id: str) -> str: ...
    def find_query(self, limit: int = 1) -> tuple[str, dict[str, str]]: ...
    def is_valid_path(self) -> str: ...


#: the variants, keyed by ``[scicat] api``
APIS: dict[str, type[V3] | type[V4]] = {"v3": V3, "v4": V4}


def split_url(url: str, api: str = "auto") -> tuple[str, str]:
    """(server root, api name) of a SciCat URL; ``auto`` takes the version from the URL (default v3)."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ConfigError(f"SciCat url '{safe_url(url)}': expected http(s)://host[:port]/api/v3 (or /api/v4)")
    base = url.rstrip("/")
    found = None
    for name in APIS:
        if base.endswith(f"/api/{name}"):
            base, found = base[: -len(f"/api/{name}")], name
            break
    if api not in ("auto", *APIS):
        raise ConfigError(f"SciCat api '{api}': must be one of auto, {', '.join(APIS)}")
    return base, (found or "v3") if api == "auto" else api


class ScicatClient(Transport, _PyScicatClient):  # type: ignore[misc]  # pyscicat ships no type information
    """Idempotent dataset creation with retries; the token never leaves the Authorization header."""

    def __init__(self, url: str, *, token: str | None = None, username: str | None = None,
                 password: str | None = None, timeout: float = 30.0, max_attempts: int = 6,
                 backoff: float = 0.5, api: str = "auto", lock_dir: str | Path | None = None,
                 grace: float = 5.0, access_group: str | None = None) -> None:
        base, api_name = split_url(url, api)
        if not token and not (username and password):
            raise ConfigError("SciCat: give a token, or a username and a password")
        # auto_login=False: logging in is deferred to the first request, through our transport.
        _PyScicatClient.__init__(self, base + "/api/v3", token=token or None, username=username,
                                 password=password, timeout_seconds=None, auto_login=False)
        self._token = None  # drop what pyscicat keeps in plain attributes; ours print as ***
        self._password = None
        self._headers: dict[str, str] = {}
        Transport.__init__(self, base, token=token, username=username, password=password, timeout=timeout,
                           max_attempts=max_attempts, backoff=backoff)
        self.api: Api = APIS[api_name]()
        self.url = base + self.api.root
        self.lock_dir = Path(lock_dir) if lock_dir else default_lock_dir()
        #: seconds to wait after an unanswered datablock POST before looking whether it landed
        self.grace = grace
        #: added to every dataset's accessGroups: a group of this account, so it can read back what it made
        self.access_group = access_group or None
        self._tls = threading.local()  # per thread: was the last upsert's datablock outcome uncertain?
        self._pid_locks: dict[str, list[Any]] = {}
        self._pid_locks_lock = threading.Lock()
        #: Post a dataset before looking for it (a new one then costs no look); False after a 409 or a look
        #: that found one, until a POST creates one again.
        self._expect_new = True

    @classmethod
    def from_config(cls, cfg: Any) -> ScicatClient:
        """From a ``config.ScicatConfig``; a missing URL or credential is a ``ConfigError`` naming the key."""
        if not cfg.url:
            raise ConfigError("SciCat url is not set: [scicat] url in the config file, or SFI_SCICAT_URL")
        token = cfg.token.get_secret_value() if cfg.token else None
        password = cfg.password.get_secret_value() if cfg.password else None
        if not token:
            if not cfg.username:
                raise ConfigError("SciCat credentials are not set: [scicat] token (SFI_SCICAT_TOKEN), "
                                  "or [scicat] username and password (SFI_SCICAT_USERNAME, SFI_SCICAT_PASSWORD)")
            if not password:
                raise ConfigError(f"SciCat user '{cfg.username}' has no password: [scicat] password "
                                  "in the config file, or SFI_SCICAT_PASSWORD")
        return cls(cfg.url, token=token, username=cfg.username, password=password, timeout=cfg.timeout,
                   max_attempts=cfg.max_attempts, backoff=cfg.backoff, api=getattr(cfg, "api", "auto"),
                   lock_dir=getattr(cfg, "lock_dir", None), grace=getattr(cfg, "grace", 5.0),
                   access_group=getattr(cfg, "access_group", None))

    def __repr__(self) -> str:
        who = f"user='{self._username}'" if self._username else "auth=token"
        return f"ScicatClient(url='{safe_url(self.url)}', {who})"

    # -- the operations ingest and listen use ------------------------------------------------------
    def upsert(self, dataset: dict[str, Any], datablock: dict[str, Any]) -> str:
        """Create ``dataset`` and its datablock once: "created", "exists" or "repaired" (datablock added)."""
        pid = dataset.get("pid")
        if not isinstance(pid, str) or not pid:
            raise ValueError("upsert needs a dataset with a 'pid' (the idempotency key)")
        self._tls.uncertain = False
        clean, warnings = sanitize_dataset(dataset)
        if self.access_group and self.access_group not in (clean.get("accessGroups") or []):
            clean = {**clean, "accessGroups": [*(clean.get("accessGroups") or []), self.access_group]}
        files = ", ".join(str(f.get("path")) for f in datablock.get("dataFileList") or [] if isinstance(f, dict))
        for warning in warnings:
            log.warning("%s%s", warning, f" (file {files})" if files else "")
        body = self.api.dataset_body(clean)
        with self._pid_lock(pid), PidJournal(self.lock_dir, self.base, pid) as journal:
            journal.wait_grace(self.grace)
            if journal.pending_since is not None:
                self._tls.uncertain = True  # an earlier POST of this host had no answer: it may land later
            owed = journal.dataset_sent  # an earlier run from this host sent the dataset, no datablock yet
            look_first = owed or journal.pending_since is not None or not self._expect_new
            seen = self._read_dataset(pid) if look_first else None
            if not isinstance(seen, dict):
                if journal.pending_since is None:
                    journal.mark_dataset_sent()
                path = self.api.create_dataset_path()
                try:
                    resp, sends = self.exchange("POST", path, body=body)
                except ScicatError as exc:
                    if (exc.auth or (exc.status or 500) < 500) and not owed and journal.pending_since is None:
                        journal.settled()  # refused before or at the server: nothing stored, nothing owed
                    raise
                if resp is not None and resp.status_code in (200, 201):
                    self._expect_new = True
                    self._post_datablock(pid, datablock, journal)
                    return "created"
                self._expect_new = False
                if resp is None or resp.status_code != 409:
                    if resp is not None and resp.status_code < 500 and not owed and journal.pending_since is None:
                        journal.settled()  # refused for sure (400, 403 ...): nothing was stored, nothing owed
                    raise self.error("POST", path, resp)
                retried = sends > 1  # our own first POST may have created it, its answer lost
                if not (owed or retried) and journal.pending_since is None:
                    journal.settled()  # made by someone else: this host owes it nothing
                if seen is None:  # not looked at yet (posted first), or it appeared since a 404: look now
                    seen = self._read_dataset(pid)
            else:
                retried = False
            if not isinstance(seen, dict):  # exists, but this account may not read it: cannot look
                if (owed or retried) and journal.pending_since is None:
                    self._post_datablock(pid, datablock, journal)  # no datablock ever left this host
                    return "repaired"
                if journal.pending_since is not None:
                    log.warning("dataset %s: a datablock POST from this host had no answer and this account "
                                "cannot read the dataset to check; counted as stored", pid)
                journal.settled()
                return "exists"
            blocks = self._blocks(pid)
            if blocks:
                journal.settled()
                if len(blocks) > 1:
                    return repair_duplicates(self, self.api, self._read_dataset, pid, blocks, seen)
                return "exists"
            self._post_datablock(pid, datablock, journal)
            return "created" if retried else "repaired"

    def converge(self, pid: str) -> str:
        """Look at a dataset sfi created earlier (a verification): "exists" (one datablock), "repaired" (identical
        duplicates deleted), "missing" (no dataset, no datablock, or this host owes it something: the caller runs
        a full ``upsert``, which needs the datablock) or "hidden" (this account may not read it).

        Why not always a full upsert: that needs the datablock, i.e. the file read and checksummed again — hours
        of I/O after a failover of a partition with large files, to find what one look finds."""
        with self._pid_lock(pid), PidJournal(self.lock_dir, self.base, pid) as journal:
            if journal.pending_since is not None or journal.dataset_sent:
                return "missing"  # this host's own note: the upsert path settles it
            seen = self._read_dataset(pid)
            if not isinstance(seen, dict):
                return "hidden" if seen == _HIDDEN else "missing"
            blocks = self._blocks(pid)
            if not blocks:
                return "missing"
            if len(blocks) > 1:
                return repair_duplicates(self, self.api, self._read_dataset, pid, blocks, seen)
            return "exists"

    def upsert_uncertain(self) -> bool:
        """Whether this thread's last ``upsert`` left a datablock's fate unknown (an unanswered POST that may
        still be stored, or a dataset this account cannot read): the caller should look again later."""
        return bool(getattr(self._tls, "uncertain", False))

    def get_dataset(self, pid: str) -> dict[str, Any] | None:
        """The dataset, or None when it is absent *or this account may not read it* (403).

        ``upsert`` handles an unreadable dataset by POSTing first (409 = exists); a token that may be
        expired is renewed before this read, so a 403 here means no read right, not "absent"."""
        seen = self._read_dataset(pid)
        return seen if isinstance(seen, dict) else None

    def get_origdatablocks(self, pid: str) -> list[dict[str, Any]]:
        """The dataset's datablocks ([] when none, or when this account may not read the dataset)."""
        if self.api.name != "v3" and not isinstance(self._read_dataset(pid), dict):
            return []
        return self._blocks(pid) or []

    def get_json(self, path: str, params: dict[str, str] | None = None, *,
                 attempts: int | None = None) -> Any | None:
        """GET ``path`` relative to the /api/v3 root (e.g. "Proposals/P1"); None on 404, ScicatError else.

        ``attempts``: 1 for a preflight that reports a problem at once instead of retrying it."""
        full = "/api/v3/" + path.lstrip("/")
        resp, _ = self.exchange("GET", full, params=params, attempts=attempts)
        if resp is not None and resp.status_code == 404:
            return None
        return self.json(resp, "GET", full)

    def ping(self) -> None:
        """A login when needed and one unretried authenticated read; ScicatError when either fails."""
        path, params = self.api.find_query(1)
        resp, _ = self.exchange("GET", path, params=params, attempts=1)
        self.json(resp, "GET", path)

    def close(self) -> None:
        self.close_sessions()

    # -- pyscicat's hook: every inherited method goes through our transport -----------------------
    def _send_to_scicat(self, cmd: str, endpoint: str, data: Any = None) -> Any:
        body = data.model_dump(exclude_none=True) if hasattr(data, "model_dump") else data
        path = "/api/v3/" + endpoint.strip("/")
        resp, _ = self.exchange(cmd.upper(), path, body=body)
        if resp is None:
            raise self.error(cmd.upper(), path, None)
        return resp

    # -- internals ---------------------------------------------------------------------------------
    def _read_dataset(self, pid: str) -> dict[str, Any] | str | None:
        """The dataset, None when absent, ``_HIDDEN`` when this account may not read it (403)."""
        path = self.api.dataset_path(pid)
        resp, _ = self.exchange("GET", path)
        if resp is not None and resp.status_code == 404:
            return None
        if resp is not None and resp.status_code == 403:
            return _HIDDEN
        result = self.json(resp, "GET", path)
        return result if isinstance(result, dict) and result else None

    def _blocks(self, pid: str) -> list[dict[str, Any]] | None:
        """The datablocks of a dataset this account can read; None when it may not (403)."""
        path, params = self.api.datablocks_query(pid)
        resp, _ = self.exchange("GET", path, params=params)
        if resp is not None and resp.status_code == 404:
            return []
        if resp is not None and resp.status_code == 403:
            return None
        result = self.json(resp, "GET", path)
        return list(result) if isinstance(result, list) else []

    def _landed(self, pid: str) -> bool:
        """After an unanswered datablock POST: is a datablock there? (unreadable: assume so, no duplicate)."""
        seen = self._read_dataset(pid)
        if not isinstance(seen, dict):
            if seen == _HIDDEN:
                log.warning("dataset %s: datablock POST unanswered and the dataset is not readable by this "
                            "account; counted as stored", pid)
            return seen == _HIDDEN
        return bool(self._blocks(pid))

    def _post_datablock(self, pid: str, datablock: dict[str, Any], journal: PidJournal) -> None:
        journal.mark_sending()
        routes = self.api.datablock_posts(pid, datablock)
        for i, (path, body) in enumerate(routes):
            try:
                resp, sends = self.exchange("POST", path, body=body, grace=self.grace,
                                            already_done=lambda: self._landed(pid))
            except ScicatError as exc:
                self._tls.uncertain = True
                if exc.status is not None and exc.status != 504:  # answered: the server is done with it
                    journal.mark_sending(at=time.time() - self.grace)
                raise
            if resp is None or sends > 1:
                self._tls.uncertain = True  # an earlier send had no answer: it may still be stored later
            if resp is None or resp.status_code in (200, 201):
                journal.settled()
                return
            if resp.status_code == 403 and i + 1 < len(routes):
                log.info("SciCat POST %s: 403 (the v4 route needs the account in the dataset's groups); "
                         "using %s", path, routes[i + 1][0])
                continue
            journal.mark_dataset_sent()  # refused for sure: nothing stored, a datablock is still owed
            raise self.error("POST", path, resp)

    @contextmanager
    def _pid_lock(self, pid: str) -> Iterator[None]:
        with self._pid_locks_lock:
            entry = self._pid_locks.setdefault(pid, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._pid_locks_lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._pid_locks[pid]

    # -- the preview attachment (issue 22): kept apart from upsert, see _attachments --------------------
    def attach_preview(self, dataset: dict[str, Any], make: Any) -> str:
        """Attach ``make()``'s preview to the dataset once (``_attachments.attach_preview``): "created",
        "exists", "none" (no picture) or "hidden" (this account cannot read the dataset: nothing sent)."""
        from ._attachments import attach_preview

        return attach_preview(self, self.api.name, dataset, make, self._pid_lock)


__all__ = ["APIS", "Api", "ScicatClient", "ScicatError", "split_url"]
