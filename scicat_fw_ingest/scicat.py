"""The SciCat client every ingest path shares: pyscicat's client made safe for unattended use.

Why a subclass and not pyscicat as is: pyscicat appends ``?access_token=`` to every URL (the token
ends up in proxy and server access logs), has no retries, no timeout on login, encodes pids with
``quote_plus`` (a space becomes ``+``, which a path does not decode), and its models disagree with
the server (``chkAlg`` typed int, ``DataFile.time`` optional). Here every request goes through one
transport (``_exchange``): the token only in ``Authorization: Bearer``, a timeout on every call,
exponential backoff with jitter on connection errors, timeouts, 5xx and 429 (``Retry-After``
honoured), one re-login on 401 when a username/password is known, and plain dicts as payloads so
what leaves follows the server. pyscicat's other methods (``datasets_find`` ...) route through the
same transport via ``_send_to_scicat``.

Thread safety: ``sfi listen`` calls ``upsert`` from several workers at once. Each thread gets its
own ``requests.Session`` (sessions are not thread-safe); the token is replaced under a lock with a
generation counter so that many threads hitting 401 together cause one login; and upserts of the
same pid are serialised inside one client so two workers never both post a datablock.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from pyscicat.client import ScicatClient as _PyScicatClient
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from .config import ScicatConfig, SecretStr
from .errors import ConfigError, SfiError

log = logging.getLogger("sfi.scicat")

_MAX_DELAY = 30.0  # longest backoff sleep between two attempts
_MAX_RETRY_AFTER = 60.0  # longest Retry-After honoured (a server asking for more gets this)


class ScicatError(SfiError):
    """SciCat refused or could not be reached; the message names method, path, status and the server's reason."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


def pid_path(pid: str) -> str:
    """A pid as one path segment: '/' and every other reserved character percent-encoded."""
    return quote(pid, safe="")


class ScicatClient(_PyScicatClient):
    """Idempotent dataset creation with retries; the token never leaves the Authorization header."""

    def __init__(self, url: str, *, token: str | None = None, username: str | None = None,
                 password: str | None = None, timeout: float = 30.0, max_attempts: int = 6,
                 backoff: float = 0.5) -> None:
        split = urlsplit(url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ConfigError(f"SciCat url '{_safe_url(url)}': expected http(s)://host[:port]/api/v3")
        if not token and not (username and password):
            raise ConfigError("SciCat: give a token, or a username and a password")
        # auto_login=False: logging in is deferred to the first request, through our transport.
        super().__init__(url.rstrip("/"), token=token or None, username=username, password=password,
                         timeout_seconds=None, auto_login=False)
        # Drop what pyscicat keeps in plain attributes; our copies print as ***.
        self._token = None
        self._password = None
        self._headers = {}
        self._secret_token = SecretStr(token) if token else None
        self._secret_password = SecretStr(password) if password else None
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self._lock = threading.Lock()  # sessions and per-pid locks
        self._auth_lock = threading.RLock()  # token replacement (login re-enters the transport)
        self._generation = 0
        self._local = threading.local()
        # Weak: a finished thread's session goes with its thread-local storage; close() gets the live ones.
        self._sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()
        self._pid_locks: dict[str, list[Any]] = {}

    @classmethod
    def from_config(cls, cfg: ScicatConfig) -> ScicatClient:
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
                   max_attempts=cfg.max_attempts, backoff=cfg.backoff)

    def __repr__(self) -> str:
        who = f"user='{self._username}'" if self._username else "auth=token"
        return f"ScicatClient(url='{_safe_url(self.url)}', {who})"

    # -- the operations ingest and listen use ------------------------------------------------------
    def upsert(self, dataset: dict, datablock: dict) -> str:
        """Create ``dataset`` and its datablock once: "created", "exists" or "repaired" (datablock added)."""
        pid = dataset.get("pid")
        if not isinstance(pid, str) or not pid:
            raise ValueError("upsert needs a dataset with a 'pid' (the idempotency key)")
        with self._pid_lock(pid):
            if self.get_dataset(pid) is None:
                resp, sends = self._exchange("POST", "Datasets", body=dataset)
                if resp is not None and resp.status_code in (200, 201):
                    self._post_datablock(pid, datablock)
                    return "created"
                if resp is None or resp.status_code != 409:
                    raise self._error("POST", "Datasets", resp)
                # 409: someone (or our own first attempt whose answer was lost) created it meanwhile.
                if self.get_origdatablocks(pid):
                    return "exists"
                self._post_datablock(pid, datablock)
                return "created" if sends > 1 else "repaired"
            if self.get_origdatablocks(pid):
                return "exists"
            self._post_datablock(pid, datablock)
            return "repaired"

    def get_dataset(self, pid: str) -> dict | None:
        path = f"Datasets/{pid_path(pid)}"
        resp, _ = self._exchange("GET", path)
        if resp is not None and resp.status_code == 404:
            return None
        result = self._json(resp, "GET", path)
        return result if isinstance(result, dict) and result else None

    def get_origdatablocks(self, pid: str) -> list[dict]:
        path = f"Datasets/{pid_path(pid)}/origdatablocks"
        resp, _ = self._exchange("GET", path)
        if resp is not None and resp.status_code == 404:
            return []
        result = self._json(resp, "GET", path)
        return list(result) if isinstance(result, list) else []

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any | None:
        """A GET relative to the API root (``Proposals/P1``): the JSON answer, ``None`` on 404."""
        resp, _ = self._exchange("GET", path, params=params)
        if resp is not None and resp.status_code == 404:
            return None
        return self._json(resp, "GET", path)

    def ping(self) -> None:
        """A login when needed and one unretried authenticated read; ScicatError when either fails."""
        path = "Datasets"
        resp, _ = self._exchange("GET", path, params={"filter": json.dumps({"limit": 1})}, attempts=1)
        self._json(resp, "GET", path)

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions), weakref.WeakSet()
            self._local = threading.local()
        for session in sessions:
            session.close()

    def login(self) -> None:
        """POST auth/login with the stored username/password; the new token replaces the old one."""
        if not (self._username and self._secret_password):
            raise ScicatError("SciCat rejected the token (401) and no username/password is configured",
                              status=401)
        body = {"username": self._username, "password": self._secret_password.get_secret_value()}
        resp, _ = self._exchange("POST", "auth/login", body=body, auth=False)
        if resp is None or resp.status_code not in (200, 201):
            raise self._error("POST", "auth/login", resp, where=f"SciCat login as '{self._username}' failed")
        data = self._json(resp, "POST", "auth/login")
        token = data.get("access_token") or data.get("id") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ScicatError(f"SciCat login as '{self._username}': the answer holds no access_token")
        self._secret_token = SecretStr(token)
        self._generation += 1

    # -- pyscicat's hook: every inherited method goes through our transport -----------------------
    def _send_to_scicat(self, cmd: str, endpoint: str, data: Any = None) -> requests.Response:
        body = data.model_dump(exclude_none=True) if hasattr(data, "model_dump") else data
        resp, _ = self._exchange(cmd.upper(), endpoint.strip("/"), body=body)
        if resp is None:
            raise self._error(cmd.upper(), endpoint, None)
        return resp

    # -- internals ---------------------------------------------------------------------------------
    def _post_datablock(self, pid: str, datablock: dict) -> None:
        path = f"Datasets/{pid_path(pid)}/origdatablocks"
        # A lost answer may hide a stored datablock: look before sending it again (sizes would add up twice).
        resp, _ = self._exchange("POST", path, body=datablock, already_done=lambda: bool(self.get_origdatablocks(pid)))
        if resp is not None and resp.status_code not in (200, 201):
            raise self._error("POST", path, resp)

    @contextmanager
    def _pid_lock(self, pid: str) -> Iterator[None]:
        with self._lock:
            entry = self._pid_locks.setdefault(pid, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if entry[1] == 0:
                    del self._pid_locks[pid]

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # requests re-reads proxy and CA-bundle settings from the environment on every request
            # (~0.5 ms of CPU each, a third of our client cost): read them once per session instead.
            settings = session.merge_environment_settings(self.url, {}, None, None, None)
            session.proxies.update(settings["proxies"] or {})
            session.verify = settings["verify"]
            if settings["cert"]:
                session.cert = settings["cert"]
            session.trust_env = False
            self._local.session = session
            with self._lock:
                self._sessions.add(session)
        return session

    def _ensure_token(self) -> int:
        """The generation of the token in use, logging in first when there is none yet."""
        if self._secret_token is None:
            with self._auth_lock:
                if self._secret_token is None:
                    self.login()
        return self._generation

    def _relogin(self, generation: int) -> None:
        with self._auth_lock:
            if self._generation == generation:  # nobody else replaced the rejected token meanwhile
                self.login()

    def _exchange(self, method: str, endpoint: str, *, body: Any = None, params: dict[str, str] | None = None,
                  auth: bool = True, attempts: int | None = None,
                  already_done: Callable[[], bool] | None = None) -> tuple[requests.Response | None, int]:
        """Send with retries; returns the final answer (any status but a retryable one) and the send count.

        Raises ScicatError when every attempt failed (connection, timeout, 5xx, 429). A ``None``
        answer means ``already_done`` found the effect of an earlier, unanswered attempt.
        """
        url = f"{self.url}/{endpoint}"
        limit = attempts or self.max_attempts
        attempt = sends = 0
        relogged = False
        ambiguous = False
        last: ScicatError | None = None
        while attempt < limit:
            attempt += 1
            if ambiguous and already_done is not None:
                try:
                    if already_done():
                        return None, sends
                    ambiguous = False
                except ScicatError as exc:  # could not look: count the attempt, look again next time
                    if not exc.retryable:
                        raise
                    last = exc
                    if attempt < limit:
                        time.sleep(self._delay(attempt, None))
                    continue
            try:
                headers = {"Accept": "application/json"}
                generation = self._ensure_token() if auth else 0
                if auth and self._secret_token is not None:
                    headers["Authorization"] = f"Bearer {self._secret_token.get_secret_value()}"
                sends += 1
                resp = self._session().request(method, url, json=body, params=params, headers=headers,
                                               timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                ambiguous = _maybe_sent(exc)
                last = ScicatError(f"SciCat {method} {_path(url)}: {_describe(exc, self.timeout, url)}",
                                   retryable=True)
                delay = self._delay(attempt, None)
            else:
                status = resp.status_code
                if status == 401 and auth and not relogged and self._username and self._secret_password:
                    relogged = True
                    attempt -= 1  # the re-login does not use up an attempt
                    self._relogin(generation)
                    continue
                if status != 429 and status < 500:
                    return resp, sends
                last = self._error(method, endpoint, resp)
                delay = self._delay(attempt, resp.headers.get("Retry-After"))
            if attempt < limit:
                log.warning("%s; retrying in %.2f s (attempt %d of %d)", last, delay, attempt + 1, limit)
                time.sleep(delay)
        assert last is not None
        raise ScicatError(f"{last} (gave up after {attempt} attempt{'s' if attempt > 1 else ''})",
                          status=last.status, retryable=True)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            seconds = _retry_after_seconds(retry_after)
            if seconds is not None:
                return min(seconds, _MAX_RETRY_AFTER)
        return min(self.backoff * 2 ** (attempt - 1), _MAX_DELAY) * random.uniform(0.5, 1.0)

    def _json(self, resp: requests.Response | None, method: str, endpoint: str) -> Any:
        if resp is None or not 200 <= resp.status_code < 300:
            raise self._error(method, endpoint, resp)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise ScicatError(f"SciCat {method} {_path(self.url + '/' + endpoint)}: "
                              f"{resp.status_code} answer is not JSON") from None

    def _error(self, method: str, endpoint: str, resp: requests.Response | None,
               where: str | None = None) -> ScicatError:
        where = where or f"SciCat {method} {_path(self.url + '/' + endpoint)}"
        if resp is None:
            return ScicatError(f"{where}: no answer")
        status = resp.status_code
        text = self._scrub(_server_message(resp))
        return ScicatError(f"{where}: {status} {resp.reason or ''}".rstrip() + (f": {text}" if text else ""),
                           status=status, retryable=status >= 500 or status == 429)

    def _scrub(self, text: str) -> str:
        for secret in (self._secret_token, self._secret_password):
            if secret and secret.get_secret_value():
                text = text.replace(secret.get_secret_value(), "***")
        return text


def _maybe_sent(exc: requests.RequestException) -> bool:
    """False only when the request surely never reached the server (refused, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return not isinstance(reason, (NewConnectionError, ConnectTimeoutError))


def _describe(exc: requests.RequestException, timeout: float, url: str) -> str:
    split = urlsplit(url)
    host = f"{split.hostname}:{split.port or (443 if split.scheme == 'https' else 80)}"
    if isinstance(exc, requests.Timeout):
        return f"no answer from {host} within {timeout:g} s"
    reason: Any = exc
    for _ in range(12):  # the chain is short; the bound only guards against a cycle
        if reason is None:
            break  # the innermost OS error reads best ("Connection refused")
        if isinstance(reason, OSError) and reason.strerror:
            return f"cannot connect to {host}: {reason.strerror}"
        nxt = getattr(reason, "reason", None) or reason.__cause__ or reason.__context__
        if nxt is None and reason.args and isinstance(reason.args[0], BaseException):
            nxt = reason.args[0]
        reason = nxt if nxt is not reason else None
    if isinstance(exc, requests.ConnectionError):
        return f"connection to {host} failed or was closed without an answer"
    return f"request to {host} failed ({type(exc).__name__})"


def _server_message(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip().replace("\n", " ")[:200]
    message = data.get("message", data) if isinstance(data, dict) else data
    if isinstance(message, list):
        return "; ".join(str(m) for m in message)
    return str(message)[:300]


def _retry_after_seconds(value: str) -> float | None:
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _path(url: str) -> str:
    return urlsplit(url).path


def _safe_url(url: str) -> str:
    """The URL without any user:password@ part or query string."""
    split = urlsplit(url)
    host = split.hostname or ""
    port = f":{split.port}" if split.port else ""
    return f"{split.scheme}://{host}{port}{split.path}" if split.scheme else url.split("?")[0]
