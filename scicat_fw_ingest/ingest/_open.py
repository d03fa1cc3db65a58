"""``open_sink``: the sink the configuration names (SciCat, or the local catalogue).

Apart from ``sink`` (the protocols) because it imports both implementations, and the catalogue is typed with the
protocol: one module holding both would be an import circle.
"""

from __future__ import annotations

import os

from ..config import Config
from .sink import Sink


def open_sink(cfg: Config) -> tuple[Sink, str]:
    """SciCat when a URL is configured, else a local catalogue directory of the exact documents.

    Returns the sink and a description of where datasets go, for the log.
    """
    if cfg.scicat.url:
        from ..scicat import ScicatClient

        return ScicatClient.from_config(cfg.scicat), cfg.scicat.url
    from ..catalogue import CatalogueDir

    directory = cfg.listen.catalogue_dir or os.path.join(cfg.listen.state_dir, "catalogue")
    return CatalogueDir(directory), f"local catalogue {directory}"
