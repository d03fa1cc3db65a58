"""Where a source checkout keeps what the tests read in place: the checkout itself and ``../shared/data``.

Why: the example configurations (``examples/``) and the reference NeXus files (``../shared/data``, read in place,
never copied) live beside the package in a checkout, not in an installed wheel; tests that need them skip when
they are absent. ``SFI_SHARED_DATA`` points elsewhere (another checkout layout, a CI cache).
"""

from __future__ import annotations

import os
from pathlib import Path

#: The checkout holding this package (``examples/``, ``docs/``, ``tests/``), when installed editable.
REPO_ROOT = Path(__file__).resolve().parents[2]
#: The real NeXus files sfi is checked against: $SFI_SHARED_DATA, else ``../shared/data`` beside the checkout.
SHARED_DATA = Path(os.environ.get("SFI_SHARED_DATA") or REPO_ROOT.parent / "shared" / "data")
