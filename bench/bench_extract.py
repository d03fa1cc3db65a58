"""Metadata extraction must not grow with the data: a 10^4- vs a 10^8-event file (ESS layout).

Target: time(10^8) / time(10^4) <= 1.5 and time(10^8) <= 100 ms. "Extraction" is everything the
ingest core does for a file except the checksum: open, snapshot, profile selection and mapping.
The files are generated into a temp dir (chunked writes; the big one is ~800 MB) and deleted.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.ingest import Ingestor
from tests.nexus_fixtures import write_ess

RATIO_TARGET = 1.5
ABSOLUTE_TARGET_S = 0.100
REPEATS = 25


def _time_extract(ingestor: Ingestor, path: Path) -> float:
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = ingestor.ingest(str(path))
        samples.append(time.perf_counter() - started)
        assert result.status == "dry-run", result.error
    return statistics.median(samples)


def main() -> bool:
    cfg = load_config(None, env={}, overrides={})
    ingestor = Ingestor(cfg, None, checksum="none")
    with tempfile.TemporaryDirectory(prefix="sfi-bench-extract-") as tmp:
        small = write_ess(Path(tmp) / "small.nxs", events=10_000)
        started = time.perf_counter()
        big = write_ess(Path(tmp) / "big.nxs", events=100_000_000)
        print(f"generated 10^8-event file: {big.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - started:.1f} s")
        _time_extract(ingestor, small)  # warm imports and caches once
        t_small = _time_extract(ingestor, small)
        t_big = _time_extract(ingestor, big)
    ratio = t_big / t_small
    print(f"extract 10^4 events: {t_small * 1000:.2f} ms (median of {REPEATS})")
    print(f"extract 10^8 events: {t_big * 1000:.2f} ms (median of {REPEATS})")
    print(f"ratio 10^8/10^4: {ratio:.2f} (target <= {RATIO_TARGET}); absolute {t_big * 1000:.1f} ms "
          f"(target <= {ABSOLUTE_TARGET_S * 1000:.0f} ms)")
    return ratio <= RATIO_TARGET and t_big <= ABSOLUTE_TARGET_S


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
