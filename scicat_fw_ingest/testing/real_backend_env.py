"""What ``sfi`` needs to talk to a real SciCat backend started by ``testing.backend``: a config and ``SFI_*`` env.

Why in the package: the real-backend CLI and preview tests log in the same way, with a username and password
from the environment as an operator would, never a token in a file.
"""

from __future__ import annotations

from scicat_fw_ingest.testing.backend import RealBackend

CONFIG = """
[defaults]
ownerGroup = "ess"
accessGroups = ["ess"]
owner = "Ingestor Test"
contactEmail = "data@facility.example"
principalInvestigator = "Ada Lovelace"
creationLocation = "ESS:CODA"
"""


def env(backend: RealBackend, user: str, password: str, api: str = "v3") -> dict[str, str]:
    return {"SFI_SCICAT_URL": f"{backend.base}/api/{api}", "SFI_SCICAT_USERNAME": user,
            "SFI_SCICAT_PASSWORD": password, "SFI_SCICAT_BACKOFF": "0.05"}
