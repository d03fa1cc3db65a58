"""The real SciCat backend (scicat-backend-next) on loopback, for contract tests and demos.

Why: a stand-in we write encodes our assumptions. The project's own test server
(``testing/scicat_server.py``) is kept for fault injection, but every contract scenario also runs
against the real backend, in both versions facilities run (5.1.0 and 4.5.0 differ: an expired token
is 401 on one and 403 on the other). The backend itself is not part of sfi: ``start.sh`` in
``../shared/scicat-backend/`` (or ``SFI_SCICAT_BACKEND_DIR``) installs and starts a built server
and a Mongo-wire database; this module runs it, reads what it prints and stops it by PID.

``SFI_TEST_SCICAT_URL`` (with ``SFI_TEST_SCICAT_VERSION``) points the tests at a backend started
elsewhere instead; it must have the same two accounts (see ``ACCOUNTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

#: The accounts ``start.sh`` configures: admin (in ADMIN_GROUPS) and a functional ingestor account that
#: may create datasets with its own pid for any ownerGroup, but cannot read other groups' datasets.
ACCOUNTS: dict[str, str] = {"admin": "adminpass", "ingestor": "ingestorpass"}
VERSIONS: tuple[str, ...] = ("5.1.0", "4.5.0")


def backend_dir() -> Path:
    """Where ``start.sh`` lives: $SFI_SCICAT_BACKEND_DIR, else ``../shared/scicat-backend`` beside the project."""
    env = os.environ.get("SFI_SCICAT_BACKEND_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "scicat-backend"


def shared_url_variable(version: str) -> str:
    """``SFI_TEST_SCICAT_URL_5_1_0``: a backend of that version with default settings, started once for a whole
    test run (``python -m scicat_fw_ingest.testing.backend run ...``) and shared by parallel test workers."""
    return "SFI_TEST_SCICAT_URL_" + version.replace(".", "_")


def why_unavailable() -> str | None:
    """None when a real backend can be started here, else the reason (for a pytest skip)."""
    if os.environ.get("SFI_TEST_SCICAT_URL") or any(os.environ.get(shared_url_variable(v)) for v in VERSIONS):
        return None
    if not (backend_dir() / "start.sh").is_file():
        return f"the real SciCat backend is absent: no {backend_dir() / 'start.sh'}"
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"the real SciCat backend needs {' and '.join(missing)} (apt-get install nodejs npm)"
    return None


@dataclass
class RealBackend:
    """A running scicat-backend-next; ``url`` ends in ``/api/v3`` (the same server serves ``/api/v4``)."""

    version: str = VERSIONS[0]
    jwt_expires_in: int | None = None
    admin_groups: str | None = None
    url: str = ""
    logs: str = ""
    pids: list[int] = field(default_factory=list)
    external: bool = False

    @property
    def name(self) -> str:
        return f"backend-{self.version}"

    @property
    def base(self) -> str:
        """The server root without ``/api/v3``."""
        return self.url.rsplit("/api/", 1)[0]

    def start(self, timeout: float = 240.0) -> RealBackend:
        external = os.environ.get(shared_url_variable(self.version)) or os.environ.get("SFI_TEST_SCICAT_URL")
        if external and self.jwt_expires_in is None and self.admin_groups is None:
            self.url, self.external = external.rstrip("/"), True
            if not os.environ.get(shared_url_variable(self.version)):
                self.version = os.environ.get("SFI_TEST_SCICAT_VERSION", self.version)
            return self
        env = {**os.environ, "SCICAT_BACKEND_VERSION": self.version}
        if self.jwt_expires_in is not None:
            env["JWT_EXPIRES_IN"] = str(self.jwt_expires_in)
        if self.admin_groups is not None:
            env["ADMIN_GROUPS"] = self.admin_groups
        proc = subprocess.run(["bash", str(backend_dir() / "start.sh")], capture_output=True, text=True,
                              env=env, timeout=timeout, stdin=subprocess.DEVNULL)
        values = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
        if proc.returncode != 0 or "SCICAT_URL" not in values:
            raise RuntimeError(f"SciCat backend {self.version} did not start (exit {proc.returncode}): "
                               f"{proc.stderr.strip()[-600:]}")
        self.url = values["SCICAT_URL"]
        self.logs = values.get("SCICAT_LOGS", "")
        self.pids = [int(p) for p in values.get("SCICAT_PIDS", "").strip('"').split()]
        return self

    def stop(self) -> None:
        """Stop the backend and its database by PID (never by process name)."""
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3  # node exits at once on SIGTERM; the database may linger: then SIGKILL
        for pid in self.pids:
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pids = []

    def alive(self) -> bool:
        """The backend answers ``/api/v3/health`` (a crashed 4.5.0 process does not)."""
        try:
            with urllib.request.urlopen(f"{self.base}/api/v3/health", timeout=3) as resp:
                status: int = resp.status
                return status == 200
        except (urllib.error.URLError, OSError):
            return False

    def login(self, username: str = "ingestor") -> str:
        """A fresh token for one of ``ACCOUNTS``."""
        body = json.dumps({"username": username, "password": ACCOUNTS[username]}).encode()
        req = urllib.request.Request(f"{self.base}/api/v3/auth/login", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return str(json.loads(resp.read())["access_token"])

    def request(self, method: str, path: str, body: object = None, *, user: str = "admin",
                token: str | None = None) -> tuple[int, Any]:
        """One raw call as ``user`` (admin by default: it reads everything); path below the server root,
        e.g. ``/api/v3/Datasets``. Returns (status, parsed JSON or text)."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token or self.login(user)}"}
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    def __enter__(self) -> RealBackend:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if not self.external:
            self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # reap it if it is our child (start.sh detaches, so usually it is not)
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def run_with_backends(command: list[str]) -> int:
    """Start one backend of each version (default settings), run ``command`` with their URLs in the
    environment (``shared_url_variable``), stop them, and return the command's exit code.

    Why: ``make test`` runs the suite in parallel workers; each worker starting its own two backends
    would cost ~8 s of CPU and ~300 MB each. Backends with other settings (short token life, other
    admin groups) are still started by the fixtures that need them. Without node/npm the command runs
    as is and the real-backend tests skip with the reason.
    """
    reason = why_unavailable()
    started: list[RealBackend] = []
    env = dict(os.environ)

    def terminated(signum: int, _frame: object) -> None:  # kill PID: stop the command and the backends too
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    try:
        if reason is None and not os.environ.get("SFI_TEST_SCICAT_URL"):
            for version in VERSIONS:
                backend = RealBackend(version).start()
                started.append(backend)
                env[shared_url_variable(version)] = backend.url
                print(f"real SciCat backend {version} for the tests: {backend.url}", flush=True)
        elif reason:
            print(f"real SciCat backend tests will be skipped: {reason}", flush=True)
        try:
            return subprocess.call(command, env=env)
        except KeyboardInterrupt:
            return 130
    finally:
        for backend in started:
            backend.stop()


if __name__ == "__main__":  # python -m scicat_fw_ingest.testing.backend run CMD...
    import sys

    if len(sys.argv) < 3 or sys.argv[1] != "run":
        sys.exit("usage: python -m scicat_fw_ingest.testing.backend run COMMAND [ARGS...]")
    sys.exit(run_with_backends(sys.argv[2:]))
