"""``sfi decode --json`` against the bare library loop, on the same message files.

Target (issue 14): sfi's wall time <= 1.2x that of a plain Python loop that reads each file,
deserialises it with ess-streaming-data-types and prints its fields as JSON (both whole processes,
start-up included, which the start-up bench measures on its own; best of three, the two interleaved so
that a change in machine load hits both alike). The messages are the file-writer ones sfi cares about (pl72,
6s4t, answ, x5f2, wrdn) and two data schemas (f144, ev44), ``COPIES`` files each.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.2
COPIES = 1500
RUNS = 3

_BARE = """
import json, sys
import numpy as np
import streaming_data_types as sdt
from streaming_data_types.utils import get_schema

def plain(value):
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value

out = sys.stdout
for path in sys.argv[1:]:
    data = open(path, "rb").read()
    value = sdt.DESERIALISERS[get_schema(data)](data)
    out.write(json.dumps(plain(value), default=str) + "\\n")
"""


def _timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> bool:
    from scicat_fw_ingest.testing.message_samples import SAMPLES

    with tempfile.TemporaryDirectory(prefix="sfi-bench-decode-") as tmp:
        files = []
        for schema, (data, _) in SAMPLES.items():
            for i in range(COPIES):
                path = Path(tmp) / f"{schema}-{i}.bin"
                path.write_bytes(data)
                files.append(str(path))
        sfi = [sys.executable, "-m", "scicat_fw_ingest", "decode", "--json", *files]
        bare = [sys.executable, "-c", _BARE, *files]
        subprocess.run(bare, stdout=subprocess.DEVNULL, check=True)  # warm the page cache
        runs = [(_timed(sfi), _timed(bare)) for _ in range(RUNS)]
        t_sfi, t_bare = min(r[0] for r in runs), min(r[1] for r in runs)
    ratio = t_sfi / t_bare
    print(f"{len(files)} messages ({', '.join(SAMPLES)}): bare library loop {t_bare:.2f} s, "
          f"sfi decode --json {t_sfi:.2f} s")
    print(f"ratio sfi / bare loop: {ratio:.2f} (target <= {TARGET})")
    return ratio <= TARGET


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
