"""``python -m scicat_fw_ingest`` is ``sfi``."""

from .cli import main

main()
