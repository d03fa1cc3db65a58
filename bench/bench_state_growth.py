"""State database growth per message (issue 23.1): 10,000 valid run starts of about 1 MB each.

Target: the state database under 50 MB after 10,000 x 1 MB valid run starts, and no log line over 8 KiB.
Before the bound, run starts were stored whole (148 messages of 0.1-1 MB made 165 MB).

The listener's path for a run start, without the broker (10 GB through a test broker would measure the broker):
``messages.decode`` of the payload, ``StateStore.put_run_start`` and the listener's log line, with sfi's own
logging set up (text format) into a file whose longest line is reported. 99 % of the run starts carry a 1 MB
nexus_structure (a big instrument), 1 % a 1 MB metadata JSON (cut to ``METADATA_KEPT``, said in the log).
``SFI_BENCH_STATE_N`` sets the number of messages (default 10,000).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from streaming_data_types.run_start_pl72 import serialise_pl72

from scicat_fw_ingest._logging import setup_logging
from scicat_fw_ingest.daemon.compact import METADATA_KEPT
from scicat_fw_ingest.daemon.state import StateStore
from scicat_fw_ingest.messages import decode

N = int(os.environ.get("SFI_BENCH_STATE_N", "10000"))
SIZE = 1_000_000
LIMIT_MB = 50.0
LINE_LIMIT = 8192


def _structure(size: int) -> str:
    stream = {"module": "ev44", "config": {"source": "detector_" + "x" * 200, "topic": "dream_detector"}}
    one = len(json.dumps(stream)) + 2
    return json.dumps({"children": [{"name": "entry", "type": "group", "children": [stream] * (size // one)}]})


def _metadata(size: int) -> str:
    return json.dumps({"proposal_id": "p2026001", **{f"k{i:05d}": "v" * 1000 for i in range(size // 1010)}})


def main() -> bool:
    big_structure, small_metadata = _structure(SIZE), json.dumps({"proposal_id": "p2026001", "title": "bench"})
    big_metadata = _metadata(SIZE)
    log = logging.getLogger("sfi.listen")
    with tempfile.TemporaryDirectory(prefix="sfi-bench-state-") as tmp:
        log_path = Path(tmp) / "listen.log"
        saved = sys.stderr
        with open(log_path, "w") as log_file:
            sys.stderr = log_file
            try:
                setup_logging("text")
            finally:
                sys.stderr = saved
            state = StateStore(Path(tmp) / "state")
            sent = 0
            started = time.perf_counter()
            for i in range(N):
                job_id = f"job-{i:06d}"
                huge_metadata = i % 100 == 99
                payload = serialise_pl72(job_id=job_id, filename=f"/writer/out/run_{i:06d}.nxs",
                                         start_time=1_796_000_000_000 + i, run_name=f"run_{i:06d}",
                                         nexus_structure="{}" if huge_metadata else big_structure,
                                         instrument_name="DREAM", service_id="kafka-to-nexus-1",
                                         metadata=big_metadata if huge_metadata else small_metadata)
                sent += len(payload)
                source = f"dream_control/0@{i}"
                message = decode(payload)  # as Listener._handle
                state.put_run_start(message.value.job_id, payload, source)
                log.info("run start %s job %s file %s", source, message.value.job_id, message.value.filename)
            elapsed = time.perf_counter() - started
            state.close()
            logging.getLogger().handlers[:] = []
        db_bytes = sum(p.stat().st_size for p in (Path(tmp) / "state").iterdir())
        lines = log_path.read_text(errors="replace").splitlines()
        longest = max((len(line.encode()) for line in lines), default=0)
        cut = sum("metadata of" in line for line in lines)
    db_mb = db_bytes / 1e6
    print(f"{N} run starts, {sent / 1e9:.2f} GB sent ({sent / N / 1e6:.2f} MB each), {elapsed:.1f} s "
          f"({N / elapsed:.0f}/s)")
    print(f"state database (with WAL): {db_mb:.1f} MB = {db_bytes / N:.0f} bytes per run start "
          f"(limit {LIMIT_MB:.0f} MB; metadata kept up to {METADATA_KEPT // 1024} KiB)")
    print(f"log: {len(lines)} lines, longest {longest} bytes (limit {LINE_LIMIT}); {cut} metadata cut(s) said")
    ok = db_bytes / N < LIMIT_MB * 1e6 / 10000 and longest <= LINE_LIMIT and cut == N // 100
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
