"""The generic harvest must not grow in memory with a log's length: a 10^4- vs a 10^8-point NXlog.

Target: peak memory (the process's VmHWM) of mapping the 10^8-point file / that of the 10^4-point file <= 1.5,
and the harvest's own peak above the process's baseline stays under 64 MiB (the log is read in bounded
slices, ``nexus.reader.summarize_dataset``). The time of the summary is printed for both (it is linear in the
points by nature: every point is read once). Each measurement runs in a fresh process so that peaks do not
mix; the files are generated into a temp dir with chunked writes (the big one is ~800 MB) and deleted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scicat_fw_ingest.testing.nexus_layouts import write_log_file

RATIO_TARGET = 1.5
DELTA_TARGET_MIB = 64.0
SMALL, BIG = 10_000, 100_000_000

#: Runs in a child: map the file (dry run, the real ingest core), report time, baseline RSS and peak RSS.
_CHILD = r"""
import json, sys, time
from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.ingest import Ingestor

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024.0
    return 0.0

cfg = load_config(None, env={}, overrides={"ingest": {"checksum": "none"}})
cfg.defaults.update({"contactEmail": "d@example.org", "owner": "o", "ownerGroup": "g", "principalInvestigator": "p"})
ingestor = Ingestor(cfg, None, checksum="none")
baseline = rss("VmRSS:")
started = time.perf_counter()
result = ingestor.ingest(sys.argv[1])
elapsed = time.perf_counter() - started
log = (result.dataset or {}).get("scientificMetadata", {}).get("sample_temperature", {})
print(json.dumps({"status": result.status, "error": result.error, "seconds": elapsed, "baseline_mib": baseline,
                  "peak_mib": rss("VmHWM:"), "count": log.get("count")}))
"""


def _measure(path: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["status"] == "dry-run", figures
    return figures


def main() -> bool:
    with tempfile.TemporaryDirectory(prefix="sfi-bench-harvest-") as tmp:
        small = write_log_file(Path(tmp) / "small.nxs", SMALL)
        started = time.perf_counter()
        big = write_log_file(Path(tmp) / "big.nxs", BIG)
        print(f"harvest: generated a 10^8-point NXlog file: {big.stat().st_size / 2**20:.0f} MiB in "
              f"{time.perf_counter() - started:.1f} s")
        _measure(small)  # warm the page cache and imports once
        few = _measure(small)
        many = _measure(big)
    assert few["count"] == SMALL and many["count"] == BIG, (few, many)
    ratio = many["peak_mib"] / few["peak_mib"]
    delta = many["peak_mib"] - many["baseline_mib"]
    print(f"harvest: 10^4-point log: {few['seconds'] * 1000:.1f} ms, peak {few['peak_mib']:.1f} MiB "
          f"(baseline {few['baseline_mib']:.1f} MiB)")
    print(f"harvest: 10^8-point log: {many['seconds']:.2f} s ({BIG / many['seconds'] / 1e6:.0f} M points/s), "
          f"peak {many['peak_mib']:.1f} MiB (baseline {many['baseline_mib']:.1f} MiB; the log itself is "
          f"{BIG * 8 / 2**20:.0f} MiB)")
    print(f"harvest: peak memory ratio 10^8/10^4: {ratio:.2f} (target <= {RATIO_TARGET}); harvest's own peak "
          f"{delta:.1f} MiB (target <= {DELTA_TARGET_MIB:.0f} MiB)")
    return ratio <= RATIO_TARGET and delta <= DELTA_TARGET_MIB


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
