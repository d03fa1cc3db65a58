"""Declarative mapping from a NeXus file (plus run metadata, config and file facts) to a SciCat dataset.

Profiles are TOML data files (``profile``); values are looked up from typed sources (``sources``)
and assembled into a dataset under fixed rules (``dataset``). See docs/mapping.md.
"""

from ._lookups import LookupNeeded, ScicatLookup
from .dataset import (
    Mapped,
    MappingError,
    check_defaults,
    check_timezone,
    map_dataset,
    pick_profile,
    require_complete,
)
from .profile import DATASET_FIELDS, REQUIRED, Profile, ProfileError, ProfileSet
from .sources import Context, to_iso

__all__ = [
    "DATASET_FIELDS", "REQUIRED", "Context", "LookupNeeded", "Mapped", "MappingError", "Profile", "ProfileError",
    "ProfileSet", "ScicatLookup",
    "check_defaults", "check_timezone", "map_dataset", "pick_profile", "require_complete", "to_iso",
]
