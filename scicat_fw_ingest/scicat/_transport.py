"""One HTTP transport for every SciCat call: sessions, retries, login and the token's whole life.

Why here and not in pyscicat: pyscicat appends ``?access_token=`` to every URL (the token ends up in
proxy and server access logs), has no retries and no timeout on login. Every request goes through
``Transport.exchange``: the token only in ``Authorization: Bearer``, a timeout on every call,
exponential backoff with jitter on connection errors, timeouts, 5xx and 429 (``Retry-After`` honoured).

Token lifecycle (the real backends differ: an expired token is 401 ``SESSION_EXPIRED`` on 5.1.0 but
403 on 4.5.0, and 4.5.0 answers a *read* with an expired token as if anonymous — 200 with public
data only, or 404): with a username/password the client logs in again *before* the token runs out
(the login answer's ``expires_in`` and the JWT's ``exp``, whichever is sooner, minus a margin), so
that a lookup never runs under an expired token; and once more on a 401, or a 403 that may mean
expiry (any 403 on a write, a 403 on a read near the expiry). A static token that is refused or past
its ``exp`` raises ``ScicatAuthError`` (retryable: the listener queues the file) with the one message
``TOKEN_REFUSED``. Refusals trip a circuit breaker shared by every thread of the client: after
``MAX_REFUSALS`` in a row no login or request is attempted for ``BREAKER_SECONDS`` (facilities lock
accounts after a few failed logins).

Thread safety: each thread gets its own ``requests.Session``; the token is replaced under a lock with a
generation counter, so many threads hitting 401 together cause one login.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from ..config import SecretStr
from ..errors import SfiError
from ._describe import describe, maybe_sent, retry_after_seconds, safe_url, server_message, url_path

log = logging.getLogger("sfi.scicat")

_MAX_DELAY = 30.0  # longest backoff sleep between two attempts
_MAX_RETRY_AFTER = 60.0  # longest Retry-After honoured (a server asking for more gets this)
#: consecutive refused logins (or refused static-token requests) before the breaker opens
MAX_REFUSALS = 3
#: how long an open breaker refuses without asking SciCat
BREAKER_SECONDS = 300.0
#: the one line operators see for a static token that no longer works
TOKEN_REFUSED = "SciCat token expired or refused: set a new one ([scicat] token or SFI_SCICAT_TOKEN)"
LOGIN_PATH = "/api/v3/auth/login"  # v4 has no login route: the v3 token works for both


class ScicatError(SfiError):
    """SciCat refused or could not be reached; the message names method, path, status and the server's reason."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 auth: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        #: True when the credentials are the problem (expired/refused token, wrong password)
        self.auth = auth


class ScicatAuthError(ScicatError):
    """The credentials do not work (yet): retryable so that files queue instead of failing."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message, status=status, retryable=retryable, auth=True)


def pid_path(pid: str) -> str:
    """A pid as one path segment: '/' and every other reserved character percent-encoded."""
    return quote(pid, safe="")


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (epoch seconds) of a JWT, unverified; None when the token is no JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


class Transport:
    """Requests with retries against one server root; ``path`` arguments start with ``/api/vN/``."""

    def __init__(self, base: str, *, token: str | None, username: str | None, password: str | None,
                 timeout: float, max_attempts: int, backoff: float) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self._username = username
        self._secret_password = SecretStr(password) if password else None
        self._secret_token: SecretStr | None = None
        self._expires_at: float | None = None  # monotonic seconds
        self._life: float | None = None
        self._lock = threading.Lock()
        #: None, or a callable that names why this process may not write to SciCat now (a fenced worker:
        #: its listener died or stopped renewing its lease); a write is then refused before it is sent
        self.write_fence: Callable[[], str | None] | None = None
        self._auth_lock = threading.RLock()
        self._generation = 0
        self._refusals = 0
        self._breaker_until = 0.0
        self._last_403_login = -1e9
        self._local = threading.local()
        self._sessions: weakref.WeakSet[requests.Session] = weakref.WeakSet()
        if token:
            self._set_token(token, None)

    # -- token -------------------------------------------------------------------------------------
    @property
    def has_password(self) -> bool:
        return bool(self._username and self._secret_password)

    def token_expires_in(self) -> float | None:
        """Seconds the current token still lives (None: unknown or no token yet)."""
        return None if self._expires_at is None else self._expires_at - time.monotonic()

    def _set_token(self, token: str, expires_in: float | None) -> None:
        lives = [x for x in (expires_in, _seconds_until(jwt_expiry(token))) if x is not None]
        life = min(lives) if lives else None
        self._secret_token = SecretStr(token)
        self._life = life
        self._expires_at = None if life is None else time.monotonic() + life
        self._generation += 1

    def _margin(self) -> float:
        """Re-login this long before expiry: a quarter of the life, at most a minute."""
        return min(60.0, 0.25 * self._life) if self._life else 0.0

    def login(self) -> None:
        """POST /api/v3/auth/login with the stored username/password; the new token replaces the old one."""
        if not self.has_password:
            raise ScicatAuthError(TOKEN_REFUSED, status=401)
        self._check_breaker()
        body = {"username": self._username, "password": self._secret_password.get_secret_value()}  # type: ignore[union-attr]
        resp, _ = self.exchange("POST", LOGIN_PATH, body=body, auth=False)
        where = f"SciCat login as '{self._username}' failed"
        if resp is None or resp.status_code not in (200, 201):
            err = self.error("POST", LOGIN_PATH, resp, where=where)
            if resp is not None and resp.status_code in (400, 401, 403):
                self._refused()
                raise ScicatAuthError(f"{err}: check [scicat] username and password", status=resp.status_code)
            raise err
        data = self.json(resp, "POST", LOGIN_PATH)
        token = (data.get("access_token") or data.get("id")) if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise ScicatError(f"SciCat login as '{self._username}': the answer holds no access_token")
        expires = data.get("expires_in") if isinstance(data, dict) else None
        self._set_token(token, float(expires) if isinstance(expires, (int, float)) and expires > 0 else None)
        self._refusals = 0

    def _refused(self) -> None:
        with self._lock:
            self._refusals += 1
            if self._refusals >= MAX_REFUSALS:
                self._breaker_until = time.monotonic() + BREAKER_SECONDS

    def _check_breaker(self) -> None:
        left = self._breaker_until - time.monotonic()
        if self._refusals >= MAX_REFUSALS and left > 0:
            who = f"login as '{self._username}'" if self.has_password else "the token"
            raise ScicatAuthError(f"SciCat refused {who} {self._refusals} times in a row; not trying again for "
                                  f"{left:.0f} s: " + ("check [scicat] username and password" if self.has_password
                                                       else TOKEN_REFUSED))

    def _ensure_token(self) -> int:
        """The generation of a token that is not about to expire, logging in first when needed."""
        left = self.token_expires_in()
        stale = self._secret_token is None or (left is not None and left <= self._margin())
        if not self.has_password:
            self._check_breaker()  # a static token refused again and again: stop sending it for a while
        if stale:
            if not self.has_password:
                if self._secret_token is None or (left is not None and left <= 0):
                    self._check_breaker()
                    raise ScicatAuthError(TOKEN_REFUSED, status=401)
                return self._generation
            with self._auth_lock:
                left = self.token_expires_in()
                if self._secret_token is None or (left is not None and left <= self._margin()):
                    self.login()
        return self._generation

    def _relogin(self, generation: int) -> None:
        with self._auth_lock:
            if self._generation == generation:  # nobody else replaced the rejected token meanwhile
                self.login()

    def _maybe_expired(self, method: str, status: int) -> bool:
        """Whether a 401/403 may be an expired token worth one re-login (403 also means "not allowed")."""
        if status == 401:
            return True
        left = self.token_expires_in()
        if left is not None and left <= 2 * self._margin() + 1:
            return True
        if method != "GET" and time.monotonic() - self._last_403_login > 10.0:
            self._last_403_login = time.monotonic()
            return True
        return left is None and method == "GET" and time.monotonic() - self._last_403_login > 60.0

    # -- sending -----------------------------------------------------------------------------------
    def exchange(self, method: str, path: str, *, body: Any = None, params: dict[str, str] | None = None,
                 auth: bool = True, attempts: int | None = None, grace: float = 0.0,
                 already_done: Callable[[], bool] | None = None) -> tuple[requests.Response | None, int]:
        """Send with retries; returns the final answer (any status but a retryable one) and the send count.

        Raises ScicatError when every attempt failed (connection, timeout, 5xx, 429). With
        ``already_done`` the request is one that must not take effect twice: after an answer that
        leaves it unknown whether it did (timeout, dropped connection, 5xx), ask ``already_done``
        before sending again — after ``grace`` seconds when no answer came (the server may still be
        working on it); ``None`` as the answer means it found the effect.
        """
        url = f"{self.base}{path}"
        limit = attempts or self.max_attempts
        attempt = sends = 0
        relogged = False
        ambiguous = unanswered = False
        last: ScicatError | None = None
        while attempt < limit:
            attempt += 1
            if ambiguous and already_done is not None:
                try:
                    if already_done():
                        return None, sends
                    ambiguous = False
                except ScicatError as exc:  # could not look: count the attempt, look again next time
                    if not exc.retryable or exc.auth:
                        raise
                    last = exc
                    if attempt < limit:
                        time.sleep(self._delay(attempt, None))
                    continue
            delay = 0.0
            fenced = self.write_fence() if self.write_fence is not None and method != "GET" else None
            if fenced:
                raise ScicatError(f"SciCat {method} {url_path(url)} not sent: {fenced}", retryable=True)
            try:
                headers = {"Accept": "application/json"}
                generation = self._ensure_token() if auth else 0
                if auth and self._secret_token is not None:
                    headers["Authorization"] = f"Bearer {self._secret_token.get_secret_value()}"
                sends += 1
                resp = self._session().request(method, url, json=body, params=params, headers=headers,
                                               timeout=self.timeout, allow_redirects=False)
            except requests.RequestException as exc:
                ambiguous = unanswered = maybe_sent(exc)
                last = ScicatError(f"SciCat {method} {url_path(url)}: {describe(exc, self.timeout, url)}",
                                   retryable=True)
                delay = self._delay(attempt, None)
            else:
                status = resp.status_code
                if auth and status in (401, 403):
                    if self.has_password and not relogged and self._maybe_expired(method, status):
                        relogged = True
                        attempt -= 1  # the re-login does not use up an attempt
                        self._relogin(generation)
                        continue
                    if not self.has_password and (status == 401 or (self.token_expires_in() or 1) <= 0):
                        self._refused()
                        raise ScicatAuthError(TOKEN_REFUSED, status=status)
                if status != 429 and status < 500:
                    if auth and status < 400:
                        self._refusals = 0
                    return resp, sends
                ambiguous = status >= 500
                unanswered = status == 504  # a gateway gave up waiting: the server may still be at it
                last = self.error(method, path, resp)
                delay = self._delay(attempt, resp.headers.get("Retry-After"))
            if unanswered and already_done is not None:  # give a slow server time to finish before looking
                delay = max(delay, grace)
            if attempt < limit:
                log.warning("%s; retrying in %.2f s (attempt %d of %d)", last, delay, attempt + 1, limit)
                time.sleep(delay)
        assert last is not None
        if ambiguous and already_done is not None:  # a last look: the final unanswered send may have landed
            try:
                if already_done():
                    return None, sends
            except ScicatError:
                pass
        raise ScicatError(f"{last} (gave up after {attempt} attempt{'s' if attempt > 1 else ''})",
                          status=last.status, retryable=True)

    def close_sessions(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions), weakref.WeakSet()
            self._local = threading.local()
        for session in sessions:
            session.close()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # requests re-reads proxy and CA-bundle settings from the environment on every request
            # (~0.5 ms of CPU each, a third of our client cost): read them once per session instead.
            settings = session.merge_environment_settings(self.base, {}, None, None, None)
            session.proxies.update(settings["proxies"] or {})
            session.verify = settings["verify"]
            if settings["cert"]:
                session.cert = settings["cert"]
            session.trust_env = False
            self._local.session = session
            with self._lock:
                self._sessions.add(session)
        return session

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            seconds = retry_after_seconds(retry_after)
            if seconds is not None:
                return min(seconds, _MAX_RETRY_AFTER)
        return min(self.backoff * 2.0 ** (attempt - 1), _MAX_DELAY) * random.uniform(0.5, 1.0)

    # -- answers -----------------------------------------------------------------------------------
    def json(self, resp: requests.Response | None, method: str, path: str) -> Any:
        if resp is None or not 200 <= resp.status_code < 300:
            raise self.error(method, path, resp)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise ScicatError(f"SciCat {method} {path}: {resp.status_code} answer is not JSON") from None

    def error(self, method: str, path: str, resp: requests.Response | None,
              where: str | None = None) -> ScicatError:
        where = where or f"SciCat {method} {path}"
        if resp is None:
            return ScicatError(f"{where}: no answer")
        status = resp.status_code
        text = self.scrub(server_message(resp))
        return ScicatError(f"{where}: {status} {resp.reason or ''}".rstrip() + (f": {text}" if text else ""),
                           status=status, retryable=status >= 500 or status == 429)

    def scrub(self, text: str) -> str:
        for secret in (self._secret_token, self._secret_password):
            if secret and secret.get_secret_value():
                text = text.replace(secret.get_secret_value(), "***")
        return text


def _seconds_until(epoch: float | None) -> float | None:
    return None if epoch is None else epoch - time.time()


__all__ = ["LOGIN_PATH", "TOKEN_REFUSED", "ScicatAuthError", "ScicatError", "Transport", "jwt_expiry",
           "pid_path", "safe_url"]
