"""The one plain warning line every command prints, in a leaf module.

Why a module of its own: the commands and the typer-free ``sfi decode`` path all need it, and taking it from the
``cli`` package itself would make those modules import the package that lazily imports them (an import circle).
"""

from __future__ import annotations

import sys


def warn(text: str) -> None:
    """One plain line on stderr for every command (no markup interpretation: messages contain brackets)."""
    sys.stderr.write(f"sfi: {text}\n")
    sys.stderr.flush()
