"""pytest plugin: the real SciCat backend as session fixtures.

Enabled with ``pytest_plugins = ("scicat_fw_ingest.testing.fixtures",)``.

Why a plugin in the package: facility teams testing their own profiles against SciCat use the same
fixtures sfi's tests use. This is the only module of ``testing/`` that imports pytest.

- ``real_scicat`` — parametrized over both backend versions (5.1.0, 4.5.0), default settings,
  started once per session each; tests must not depend on an empty database (use fresh pids).
- ``real_scicat_factory`` — ``factory(version, jwt_expires_in=20, admin_groups="admin,ingestor")`` for
  a backend with other settings, started on first use and cached for the session.
Skipped with the reason only where node/npm or the backend folder are absent.
- ``scicat_server`` — the project's SciCat test server (real HTTP, the backend's rules), started per test with
  one functional account ``scicat_payloads.USER``/``PASSWORD``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .backend import VERSIONS, RealBackend, why_unavailable
from .scicat_payloads import PASSWORD, USER
from .scicat_server import ScicatTestServer

BackendFactory = Callable[..., RealBackend]


@pytest.fixture(scope="session")
def real_scicat_factory() -> Iterator[BackendFactory]:
    """Start real backends on demand, one per (version, settings), all stopped at the end of the session."""
    reason = why_unavailable()
    running: dict[tuple[str, int | None, str | None], RealBackend] = {}

    def factory(version: str = VERSIONS[0], *, jwt_expires_in: int | None = None,
                admin_groups: str | None = None) -> RealBackend:
        if reason:
            pytest.skip(reason)
        key = (version, jwt_expires_in, admin_groups)
        if key not in running:
            running[key] = RealBackend(version, jwt_expires_in=jwt_expires_in, admin_groups=admin_groups).start()
        return running[key]

    try:
        yield factory
    finally:
        for backend in running.values():
            if not backend.external:
                backend.stop()


@pytest.fixture(scope="session", params=VERSIONS, ids=[f"backend-{v}" for v in VERSIONS])
def real_scicat(request: pytest.FixtureRequest, real_scicat_factory: BackendFactory) -> RealBackend:
    """A real scicat-backend-next of each version, default settings (token life 1 h, admin = admin)."""
    return real_scicat_factory(request.param)


@pytest.fixture
def scicat_server() -> Iterator[ScicatTestServer]:
    """A started SciCat test server with one functional account ``USER``/``PASSWORD``."""
    with ScicatTestServer({USER: PASSWORD}) as server:
        yield server
