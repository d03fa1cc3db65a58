"""Metadata extraction must not grow with the data: 10^4- vs 10^8-event files, ESS and ISIS layouts.

Target (each layout): time(10^8) / time(10^4) <= 1.5 and time(10^8) <= 100 ms. "Extraction" is everything
the ingest core does for a file except the checksum: open, profile selection and mapping — for ISIS files
including the facts derived from dataset shapes (event_count, frame_count), which must never read the
event arrays. The files are generated into a temp dir (chunked writes; a big one is ~800 MB) one layout
at a time and deleted.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.ingest import Ingestor
from scicat_fw_ingest.testing.nexus_files import write_ess, write_isis

RATIO_TARGET = 1.5
ABSOLUTE_TARGET_S = 0.100
REPEATS = 25
SMALL, BIG = 10_000, 100_000_000


def _time_extract(ingestor: Ingestor, path: Path) -> float:
    samples = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = ingestor.ingest(str(path))
        samples.append(time.perf_counter() - started)
        assert result.status == "dry-run", result.error
    return statistics.median(samples)


def _layout(name: str, write: Callable[..., Path], ingestor: Ingestor) -> bool:
    with tempfile.TemporaryDirectory(prefix=f"sfi-bench-extract-{name}-") as tmp:
        small = write(Path(tmp) / "small.nxs", events=SMALL)
        started = time.perf_counter()
        big = write(Path(tmp) / "big.nxs", events=BIG)
        print(f"{name}: generated 10^8-event file: {big.stat().st_size / 2**20:.0f} MiB in "
              f"{time.perf_counter() - started:.1f} s")
        counted = ingestor.ingest(str(big)).dataset or {}
        events = counted.get("scientificMetadata", {}).get("event_count", {}).get("value")
        if name == "isis":
            assert events == BIG, f"event_count {events}, expected {BIG}"
        _time_extract(ingestor, small)  # warm imports and caches once
        t_small = _time_extract(ingestor, small)
        t_big = _time_extract(ingestor, big)
    ratio = t_big / t_small
    print(f"{name}: extract 10^4 events: {t_small * 1000:.2f} ms (median of {REPEATS})")
    print(f"{name}: extract 10^8 events: {t_big * 1000:.2f} ms (median of {REPEATS})"
          + (f", event_count {events} from the shape" if events is not None else ""))
    print(f"{name}: ratio 10^8/10^4: {ratio:.2f} (target <= {RATIO_TARGET}); absolute {t_big * 1000:.1f} ms "
          f"(target <= {ABSOLUTE_TARGET_S * 1000:.0f} ms)")
    return ratio <= RATIO_TARGET and t_big <= ABSOLUTE_TARGET_S


def main() -> bool:
    cfg = load_config(None, env={}, overrides={})
    cfg.defaults.update({"contactEmail": "data@facility.example"})  # the ISIS fixture has no user email
    ingestor = Ingestor(cfg, None, checksum="none")
    results = [_layout("ess", write_ess, ingestor), _layout("isis", write_isis, ingestor)]
    return all(results)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
