"""Start-up time of one ``sfi`` process: ``sfi --help`` and ``sfi decode FILE``, against scicat-ingestor's.

Targets (issue 14): both <= 250 ms wall (best of several runs, interleaved, warm page cache: the
machine may be shared, and a load spike is not start-up time; ``python -c pass`` is printed as the floor). Every
command used to import every other command's libraries (h5py, numpy, confluent-kafka, pyscicat); now a command's
module is imported only when it runs (cli/_app.py). Printed with scicat-ingestor's
``scicat_background_ingestor --help`` (the process its daemon starts per file) as the peer.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._peer import peer

TARGET_S = 0.250
RUNS = 9


def _best(commands: list[list[str]]) -> list[float]:
    """Best wall time of each command over ``RUNS`` rounds (one run of each per round)."""
    for cmd in commands:
        subprocess.run(cmd, capture_output=True, check=False)  # warm the page cache
    samples: list[list[float]] = [[] for _ in commands]
    for _ in range(RUNS):
        for cmd, times in zip(commands, samples, strict=True):
            started = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, check=False)
            times.append(time.perf_counter() - started)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr.decode()[-300:]}")
    return [min(times) for times in samples]


def main() -> bool:
    from scicat_fw_ingest.testing.message_samples import SAMPLES

    sfi = str(Path(sys.executable).with_name("sfi"))
    with tempfile.TemporaryDirectory(prefix="sfi-bench-startup-") as tmp:
        message = Path(tmp) / "wrdn.bin"
        message.write_bytes(SAMPLES["wrdn"][0])
        bin_dir, why = peer()
        commands = [[sys.executable, "-c", "pass"], [sfi, "--help"], [sfi, "decode", str(message)]]
        if bin_dir is not None:
            commands.append([str(bin_dir / "scicat_background_ingestor"), "--help"])
        bare, t_help, t_decode, *rest = _best(commands)
    print(f"best of {RUNS}: python -c pass: {bare * 1000:.0f} ms (the floor)")
    print(f"sfi --help: {t_help * 1000:.0f} ms (target <= {TARGET_S * 1000:.0f} ms)")
    print(f"sfi decode FILE: {t_decode * 1000:.0f} ms (target <= {TARGET_S * 1000:.0f} ms)")
    if not rest:
        print(f"SKIPPED the scicat-ingestor comparison: {why}")
    else:
        t_peer = rest[0]
        print(f"scicat_background_ingestor --help: {t_peer * 1000:.0f} ms; "
              f"sfi --help takes {t_help / t_peer:.2f}x, sfi decode FILE {t_decode / t_peer:.2f}x of that")
    return t_help <= TARGET_S and t_decode <= TARGET_S


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
