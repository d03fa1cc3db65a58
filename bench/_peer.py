"""scicat-ingestor, the peer the benchmarks measure against: see ``scicat_fw_ingest.testing.peer``.

The installer lives in the package (tests run the peer's own dataset building too); benches import it here.
"""

from __future__ import annotations

from scicat_fw_ingest.testing.peer import (
    CACHE,
    PEER_DIR,
    SCHEMA,
    _python312,
    peer,
    schema_dir,
)

__all__ = ["CACHE", "PEER_DIR", "SCHEMA", "_python312", "peer", "schema_dir"]

if __name__ == "__main__":
    where, why = peer()
    print(where or f"unavailable: {why}")
