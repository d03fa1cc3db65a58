"""A preview's cost must not grow with the data: 10^4- vs 10^8-event NXevent_data (issue 22).

Targets: time(10^8) / time(10^4) <= 1.5 and peak memory(10^8) / peak memory(10^4) <= 1.5. Time is the
median of ``REPEATS`` ``make_preview`` calls in this process (matplotlib imported once before: a worker
pays that once, not per file); peak memory is the peak RSS of a fresh process that draws one preview
(``sfi preview FILE -o``), so it includes the interpreter and matplotlib, as an operator sees it. The
absolute time is printed beside the ingest core's time for the same file (dry run, metadata and
datablock without checksum: ``bench_extract``'s measure). The files are generated in a temp dir with
chunked writes (the big one ~800 MB) and deleted.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.ingest import Ingestor
from scicat_fw_ingest.preview import Preview, make_preview
from scicat_fw_ingest.testing.nexus_files import write_ess

RATIO_TARGET = 1.5
REPEATS = 9
SMALL, BIG = 10_000, 100_000_000

_PEAK = ("import resource, sys; from scicat_fw_ingest.preview import make_preview; "
         "made = make_preview(sys.argv[1]); assert made.png; "
         "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def _median_time(call: object, repeats: int = REPEATS) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()  # type: ignore[operator]
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def _peak_rss_mib(path: Path) -> float:
    out = subprocess.run([sys.executable, "-c", _PEAK, str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024  # ru_maxrss is KiB on Linux


def main() -> bool:
    cfg = load_config(None, env={}, overrides={"ingest": {"preview": False}})
    ingestor = Ingestor(cfg, None, checksum="none")
    figures: dict[str, tuple[float, float, float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="sfi-bench-preview-") as tmp:
        small = write_ess(Path(tmp) / "small.nxs", events=SMALL)
        started = time.perf_counter()
        big = write_ess(Path(tmp) / "big.nxs", events=BIG)
        print(f"generated the 10^8-event file: {big.stat().st_size / 2**20:.0f} MiB in "
              f"{time.perf_counter() - started:.1f} s")
        assert isinstance(make_preview(small), Preview)  # imports matplotlib, builds its font cache once
        files = {"10^4": small, "10^8": big}
        samples: dict[str, list[float]] = {name: [] for name in files}
        for _ in range(REPEATS):  # interleaved: a busy machine slows both alike
            for name, path in files.items():
                started = time.perf_counter()
                make_preview(path)
                samples[name].append(time.perf_counter() - started)
        for name, path in files.items():
            made = make_preview(path)
            assert isinstance(made, Preview), made
            t_preview = statistics.median(samples[name])
            t_ingest = _median_time(lambda p=path: ingestor.ingest(str(p)))
            figures[name] = (t_preview, t_ingest, _peak_rss_mib(path), len(made.png))
            print(f"{name} events: preview {t_preview * 1000:.0f} ms per file (median of {REPEATS}), ingest "
                  f"(dry run, no checksum) {t_ingest * 1000:.1f} ms; peak RSS {figures[name][2]:.0f} MiB; "
                  f"PNG {len(made.png) / 1024:.1f} KB: {made.caption}")
    time_ratio = figures["10^8"][0] / figures["10^4"][0]
    memory_ratio = figures["10^8"][2] / figures["10^4"][2]
    print(f"ratio 10^8/10^4: time {time_ratio:.2f}, peak memory {memory_ratio:.2f} (target <= {RATIO_TARGET} each)")
    print(f"own process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return time_ratio <= RATIO_TARGET and memory_ratio <= RATIO_TARGET


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
