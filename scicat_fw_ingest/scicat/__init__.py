"""SciCat: one client for API v3 and v4 behind one interface (``ScicatClient``), picked by ``[scicat] api``.

- ``_transport``: sessions, retries, login and the token's life, the circuit breaker;
- ``v3`` / ``v4``: paths and payload shapes of each API version (login is always on v3);
- ``_client``: ``ScicatClient`` — idempotent ``upsert`` (exactly one datablock per dataset);
- ``_journal``: the per-pid lock across processes; ``_payload``: what the backend would reject or crash on.
"""

from __future__ import annotations

from typing import Any

from ._client import APIS, ScicatClient, split_url
from ._payload import sanitize_dataset
from ._transport import TOKEN_REFUSED, ScicatAuthError, ScicatError, jwt_expiry, pid_path

__all__ = ["APIS", "TOKEN_REFUSED", "ScicatAuthError", "ScicatClient", "ScicatError", "client_from_config",
           "jwt_expiry", "pid_path", "sanitize_dataset", "split_url"]


def client_from_config(cfg: Any) -> ScicatClient:
    """The client for ``[scicat]``: ``api = "auto"`` takes v3/v4 from the URL, else the one named."""
    return ScicatClient.from_config(cfg)
