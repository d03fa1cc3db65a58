"""A configuration and a dry run of the ingest core on one file: the dataset sfi would post, without a server.

Why in the package: the mapping, layout, harvest and lookup tests, and a facility team writing its own profile,
all ask the same question ("what would this file become?") the same way ``sfi ingest-file --dry-run`` answers it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scicat_fw_ingest.config import Config, load_config
from scicat_fw_ingest.ingest import Ingestor, RunInfo


def make_cfg(**ingest: object) -> Config:
    cfg = load_config(None, env={}, overrides={"ingest": dict(ingest)})
    cfg.defaults.update({"contactEmail": "data@facility.example", "owner": "ingestor", "ownerGroup": "facility",
                         "principalInvestigator": "Unknown PI"})
    return cfg


def dry(cfg: Config, path: Path, run: RunInfo | None = None, **kw: Any) -> dict[str, Any]:
    result = Ingestor(cfg, None, **kw).ingest(str(path), run)
    assert result.status == "dry-run", result.error
    assert result.dataset is not None
    return result.dataset


def origins(cfg: Config, path: Path, run: RunInfo | None = None) -> dict[str, tuple[object, str]]:
    return {f: (v, o) for f, v, o in Ingestor(cfg, None).explain(str(path), run)}


def write_profile(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path
