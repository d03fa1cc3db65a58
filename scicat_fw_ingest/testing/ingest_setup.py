"""A configuration (file text, ``SFI_*`` environment or ``Config``) pointing sfi at the SciCat test server.

Why in the package: ``sfi ingest-file``'s tests, its Ctrl-C tests and a facility's own smoke tests all need the
same minimal valid defaults and the same view of what reached the server.
"""

from __future__ import annotations

from scicat_fw_ingest.config import Config, load_config
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

DEFAULTS = ('[defaults]\ncontactEmail = "data@facility.example"\nowner = "ingestor"\nownerGroup = "facility"\n'
            'principalInvestigator = "Unknown PI"\n')


def env_for(server: ScicatTestServer, **extra: str) -> dict[str, str]:
    return {"SFI_SCICAT_URL": server.url, "SFI_SCICAT_TOKEN": server.token, "SFI_SCICAT_BACKOFF": "0.01",
            **extra}


def cfg_for(server: ScicatTestServer, **ingest: object) -> Config:
    cfg = load_config(None, env={}, overrides={"scicat": {"url": server.url, "backoff": 0.01},
                                               "ingest": dict(ingest)})
    cfg.scicat.token = load_config(None, env={"SFI_SCICAT_TOKEN": server.token}).scicat.token
    cfg.defaults.update({"contactEmail": "data@facility.example", "owner": "ingestor", "ownerGroup": "facility",
                         "principalInvestigator": "Unknown PI"})
    return cfg


def posts(server: ScicatTestServer) -> list[str]:
    return [r.path for r in server.requests if r.method == "POST"]
