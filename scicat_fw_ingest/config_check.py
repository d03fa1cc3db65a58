"""Whole-configuration validation, run by every command before it does any work (and by ``sfi config --check``).

Why: ``load_config`` checks each key's type as it reads it, but what a key *means* was checked only
where it was used — a bad ``[defaults]`` key or a missing profile directory surfaced in every
worker process of ``sfi listen``, per file, forever. Here the whole configuration is checked at
once and every problem comes back as one line, so an operator fixes them all in one go.

Checks that need the mapping code (``[defaults]`` keys, profiles) import it only when the
configuration has something for them to check, so that a command without a config file starts fast.
"""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit

from .config import Config, masked_url
from .errors import ConfigError, SfiError


def problems(cfg: Config) -> list[str]:
    """Every problem found in ``cfg``, one line each (empty when the configuration is usable)."""
    found: list[str] = []
    found += _scicat(cfg)
    found += _defaults(cfg)
    found += _profiles(cfg)
    found += _paths(cfg)
    found += _numbers(cfg)
    where = f"config ({cfg.source})" if cfg.source else "config"
    return [f"{where}: {line}" for line in found]


def validate(cfg: Config) -> Config:
    """``cfg`` unchanged, or ``ConfigError`` holding every problem (one per line)."""
    found = problems(cfg)
    if found:
        raise ConfigError("\n".join(found))
    return cfg


def _scicat(cfg: Config) -> list[str]:
    sc = cfg.scicat
    out: list[str] = []
    if sc.url:
        split = urlsplit(sc.url)
        shown = masked_url(sc.url)
        if split.scheme not in ("http", "https") or not split.hostname:
            out.append(f"[scicat] url '{shown}': expected http(s)://host[:port]/api/v3")
        elif split.username or split.password:
            out.append(f"[scicat] url '{shown}': holds credentials; give them as [scicat] username/password "
                       "or SFI_SCICAT_TOKEN instead")
        elif not split.path.rstrip("/").endswith(("/api/v3", "/api/v4")):
            out.append(f"[scicat] url '{shown}': must end in /api/v3 or /api/v4 (e.g. {split.scheme}://"
                       f"{split.netloc.rpartition('@')[2]}/api/v3)")
        if split.query or split.fragment:
            out.append(f"[scicat] url '{shown}': must not have a query or fragment")
    if sc.password and not sc.username:
        out.append("[scicat] password is set but no username")
    return out


_EMAIL = re.compile(r"^[^@\s;]+@[^@\s;]+\.[^@\s;]+$")
#: [defaults] keys SciCat validates as (semicolon-separated) emails, and those it wants as strings
_EMAIL_DEFAULTS = ("contactEmail", "ownerEmail")
_STRING_DEFAULTS = ("runNumber", "proposalId", "sampleId", "instrumentId", "owner", "ownerGroup",
                    "principalInvestigator", "creationLocation")


def _defaults(cfg: Config) -> list[str]:
    """Unknown keys, and values SciCat would refuse for every dataset (emails, strings given as numbers)."""
    if not cfg.defaults:
        return []
    from .mapping.profile import DATASET_FIELDS

    known = sorted(k for k in DATASET_FIELDS if k not in ("pid", "sourceFolder"))
    out = [f"[defaults] {key}: not a SciCat dataset field a default can fill (known: {', '.join(known)})"
           for key in cfg.defaults if key not in known]
    for key in _EMAIL_DEFAULTS:
        value = cfg.defaults.get(key)
        if value is not None and not (isinstance(value, str)
                                      and all(_EMAIL.match(p.strip()) for p in value.split(";"))):
            out.append(f"[defaults] {key} = {value!r}: not an email address (several: joined by ';'); "
                       "SciCat would refuse every dataset")
    for key in _STRING_DEFAULTS:
        value = cfg.defaults.get(key)
        if value is not None and not isinstance(value, str):
            out.append(f"[defaults] {key} = {value!r}: must be a string (quote it: {key} = \"{value}\"); "
                       f"SciCat refuses a {type(value).__name__}")
    return out


def _profiles(cfg: Config) -> list[str]:
    dirs = cfg.ingest.profile_dirs
    out = [f"[ingest] profile_dirs: {d}: not a directory" for d in dirs if not os.path.isdir(d)]
    if cfg.ingest.timezone:
        from .mapping.profile import known_zone

        if not known_zone(cfg.ingest.timezone):
            out.append(f"[ingest] timezone: '{cfg.ingest.timezone}' is not a known time zone "
                       "(an IANA name such as 'Europe/Paris', or 'UTC')")
    usable = [d for d in dirs if os.path.isdir(d)]
    if not usable and not cfg.ingest.profile:
        return out
    from .mapping.profile import ProfileSet

    for folder in usable:  # one line per broken directory, not only the first
        try:
            ProfileSet([folder])
        except SfiError as exc:
            out.append(f"[ingest] profile_dirs: {exc}")
    if cfg.ingest.profile:
        try:
            ProfileSet(usable).get(cfg.ingest.profile)
        except SfiError as exc:
            if not any(str(exc) in line for line in out):
                out.append(f"[ingest] profile: {exc}")
    return out


def _paths(cfg: Config) -> list[str]:
    out: list[str] = []
    for writer_prefix, local_prefix in cfg.ingest.path_map:
        if not writer_prefix.startswith("/"):
            out.append(f"[ingest] path_map: writer prefix '{writer_prefix}': must be an absolute path")
        if not os.path.isdir(local_prefix):
            out.append(f"[ingest] path_map: data root '{local_prefix}' (for '{writer_prefix}'): not a directory "
                       "on this host")
    if cfg.isis.template_dir and not os.path.isdir(cfg.isis.template_dir):
        out.append(f"[isis] template_dir: {cfg.isis.template_dir}: not a directory")
    for name, value in (("state_dir", cfg.listen.state_dir), ("catalogue_dir", cfg.listen.catalogue_dir)):
        if value and os.path.exists(value) and not os.path.isdir(value):
            out.append(f"[listen] {name}: {value}: exists but is not a directory")
    return out


def _numbers(cfg: Config) -> list[str]:
    rules: list[tuple[str, float | int | None, float, str]] = [
        ("[scicat] timeout", cfg.scicat.timeout, 0, ">"),
        ("[scicat] max_attempts", cfg.scicat.max_attempts, 1, ">="),
        ("[scicat] backoff", cfg.scicat.backoff, 0, ">="),
        ("[ingest] workers", cfg.ingest.workers, 1, ">="),
        ("[ingest] file_wait", cfg.ingest.file_wait, 0, ">="),
        ("[ingest] settle_seconds", cfg.ingest.settle_seconds, 0, ">="),
        ("[ingest] complete_wait", cfg.ingest.complete_wait, 0, ">"),
        ("[listen] workers", cfg.listen.workers, 1, ">="),
        ("[listen] processes", cfg.listen.processes, 0, ">="),
        ("[listen] retry_base", cfg.listen.retry_base, 0, ">"),
        ("[listen] retry_max", cfg.listen.retry_max, 0, ">"),
        ("[listen] run_start_days", cfg.listen.run_start_days, 0, ">"),
        ("[scicat] grace", cfg.scicat.grace, 0, ">="),
        ("[listen] held_max", cfg.listen.held_max, 1, ">="),
        ("[listen] inflight_max", cfg.listen.inflight_max, 1, ">="),
        ("[listen] takeover_wait", cfg.listen.takeover_wait, 0, ">="),
        ("[listen] verify_after", cfg.listen.verify_after, 0, ">"),
    ]
    out = []
    for name, value, bound, op in rules:
        if value is not None and not (value > bound if op == ">" else value >= bound):
            out.append(f"{name}: {value} must be {op} {bound}")
    port = cfg.listen.http_port
    if port is not None and not 0 <= port <= 65535:
        out.append(f"[listen] http_port: {port} is not a TCP port (0-65535)")
    if cfg.ingest.complete_when != "at-once" and cfg.ingest.complete_when != "read-only" \
            and cfg.ingest.complete_wait <= cfg.ingest.settle_seconds:
        out.append(f"[ingest] complete_wait ({cfg.ingest.complete_wait:g}) must exceed settle_seconds "
                   f"({cfg.ingest.settle_seconds:g}): no file could settle before the deadline")
    if cfg.listen.retry_max < cfg.listen.retry_base:
        out.append(f"[listen] retry_max ({cfg.listen.retry_max:g}) is below retry_base ({cfg.listen.retry_base:g})")
    return out


__all__ = ["problems", "validate"]
