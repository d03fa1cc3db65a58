"""``sfi scicat check``: what the configured account can do, learned without creating anything.

Why a preflight: the problems that otherwise show up per file at run time — a wrong password, a
token about to expire, a URL one path segment off, an account that may create but not read datasets of
the facility's group, defaults the backend rejects — each cost a facility a night of failed files.
Each check is one line; a problem makes the command exit 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ._client import ScicatClient
from ._payload import sanitize_dataset
from ._transport import ScicatError


@dataclass
class CheckLine:
    """One line of the report; ``ok`` False is a problem (exit 1), None is information."""

    ok: bool | None
    name: str
    text: str


def sample_dataset(defaults: dict[str, Any]) -> dict[str, Any]:
    """A raw dataset as sfi would send it, from ``[defaults]`` with placeholders for the rest."""
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    body: dict[str, Any] = {"type": "raw", "ownerGroup": "sfi-check", "owner": "sfi check",
                            "contactEmail": "sfi-check@example.org", "sourceFolder": "/sfi/check",
                            "creationTime": now, "principalInvestigator": "sfi check",
                            "creationLocation": "sfi check"}
    body.update({k: v for k, v in defaults.items() if k not in ("pid", "sourceFolder")})
    return sanitize_dataset(body)[0]


def preflight(client: ScicatClient, defaults: dict[str, Any]) -> list[CheckLine]:
    """Log in, report the token's life, read, validate a sample dataset, say what the account may do."""
    lines = [CheckLine(None, "server", f"{client.base} (datasets via API {client.api.name}, login via /api/v3)")]
    try:
        if client.has_password:
            client.login()
            lines.append(CheckLine(True, "login", f"logged in as '{client._username}'"))
        else:
            client._ensure_token()
            lines.append(CheckLine(True, "login", "static token (no username/password: sfi cannot renew it)"))
    except ScicatError as exc:
        lines.append(CheckLine(False, "login", str(exc)))
        return lines
    left = client.token_expires_in()
    if left is None:
        lines.append(CheckLine(None, "token", "expiry unknown (not a JWT, no expires_in)"))
    else:
        until = (datetime.now(UTC) + timedelta(seconds=left)).strftime("%Y-%m-%d %H:%M:%S UTC")
        renew = "renewed automatically before then" if client.has_password else "then set a new one"
        lines.append(CheckLine(left > 0, "token", f"expires in {left:.0f} s (at {until}); {renew}"))
    groups: list[str] = []
    try:
        who = client.get_json("auth/whoami", attempts=1) or {}
        groups = [str(g) for g in who.get("currentGroups") or []] if isinstance(who, dict) else []
        lines.append(CheckLine(None, "account", f"groups: {', '.join(groups) or '(none)'}"))
        user_id = (who.get("_id") or who.get("id")) if isinstance(who, dict) else None
        may = client.get_json(f"users/{user_id}/authorization/dataset/create", attempts=1) if user_id else None
        if isinstance(may, dict) and "authorization" in may:
            lines.append(CheckLine(bool(may["authorization"]), "create",
                                   "may create datasets" if may["authorization"] else
                                   "may NOT create datasets (not in CREATE_DATASET_GROUPS)"))
    except ScicatError as exc:
        lines.append(CheckLine(None, "account", f"cannot tell the account's groups: {exc}"))
    try:
        client.ping()
        lines.append(CheckLine(True, "read", "may list datasets"))
    except ScicatError as exc:
        lines.append(CheckLine(False, "read", str(exc)))
    sample = sample_dataset(defaults)
    try:
        resp, _ = client.exchange("POST", client.api.is_valid_path(), body=sample, attempts=1)
        answer = client.json(resp, "POST", client.api.is_valid_path())
        valid = isinstance(answer, dict) and answer.get("valid") is True
        lines.append(CheckLine(valid, "validate", "a dataset from [defaults] is valid (Datasets/isValid)" if valid
                               else f"a dataset from [defaults] is NOT valid: {answer}"))
    except ScicatError as exc:
        lines.append(CheckLine(False, "validate", str(exc)))
    wanted = {str(sample.get("ownerGroup"))} | {str(g) for g in sample.get("accessGroups") or []}
    if client.access_group:
        wanted.add(client.access_group)
    if "admin" in groups:
        lines.append(CheckLine(None, "rights", "in group 'admin' (the backend's default ADMIN_GROUPS): "
                               "reads every dataset, so every re-run can verify datablocks"))
    elif client.access_group and groups and client.access_group not in groups:
        lines.append(CheckLine(False, "rights", f"[scicat] access_group '{client.access_group}' is not one of the "
                               f"account's groups ({', '.join(groups)}): it does not let sfi read back its datasets"))
    elif client.access_group and client.access_group in groups:
        lines.append(CheckLine(None, "rights", f"reads back every dataset it creates through [scicat] access_group "
                               f"'{client.access_group}' (one datablock per dataset across hosts needs that look); "
                               "not an admin: it may not delete a duplicate datablock (only DELETE_GROUPS may), so "
                               "one is reported as failed, not repaired"))
    elif groups and not wanted & set(groups):
        lines.append(CheckLine(None, "rights", f"datasets of group(s) {', '.join(sorted(wanted))} are readable only "
                               "if the account is an admin; otherwise sfi creates them without reading back "
                               "(409 = exists) and cannot verify their datablock after a lost answer or on "
                               "another host: set [scicat] access_group to one of the account's groups "
                               f"({', '.join(groups)}) so that it can read back what it writes"))
    return lines
