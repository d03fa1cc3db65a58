"""``sfi produce-test --writer supermusr``: the option parsing and output of the simulated SuperMuSR writer.

Kept apart from ``produce_test`` (the kafka-to-nexus simulator's command) so that each writer's
command-line glue stays with its own simulator (``supermusr``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import Config
from ..errors import ConfigError
from ._common import stdout, warn


def parse_copy(spec: str) -> tuple[float, int, float, float]:
    """``"MB,KB,DELAY,PAUSE"`` → (file size MB, chunk bytes, delay s, pause s); ``ConfigError`` when malformed."""
    parts = [p.strip() for p in spec.split(",")]
    try:
        size_mb, chunk_kb, delay, pause = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"--copy '{spec}': expected four numbers MB,KB,DELAY,PAUSE (e.g. 3,256,0.01,0)") from None
    if size_mb <= 0 or chunk_kb < 1 or delay < 0 or pause < 0:
        raise ConfigError(f"--copy '{spec}': MB > 0, KB >= 1, DELAY >= 0 and PAUSE >= 0 are required")
    return size_mb, int(chunk_kb * 1024), delay, pause


def produce_cli(writer: str, cfg: Config, count: int, output_dir: Path, archive_dir: Path | None, copy: str, *,
                topic: str, instrument: str | None, proposal: str | None, seed: int | None, as_json: bool) -> None:
    """Run the simulated SuperMuSR writer; one line (or JSON object) per archived file.

    The run start's metadata carries ``proposal_id`` (``--proposal``), as a facility's run control would.
    """
    if writer != "supermusr":
        raise ConfigError(f"--writer '{writer}': must be kafka-to-nexus or supermusr")
    if count < 1:
        raise ConfigError(f"--count {count}: must be at least 1")
    if archive_dir is None:
        raise ConfigError("--writer supermusr needs --archive-dir (where finished files are copied)")
    for name, folder in (("--output-dir", output_dir), ("--archive-dir", archive_dir)):
        if not folder.is_dir():
            raise ConfigError(f"{name} {folder}: does not exist or is not a directory")
    if output_dir.resolve() == archive_dir.resolve():
        raise ConfigError("--output-dir and --archive-dir must differ (the writer copies from one to the other)")
    size_mb, chunk, delay, pause = parse_copy(copy)
    from ..simulate.supermusr import SimulatedRun, simulate_supermusr

    if not cfg.bootstrap:
        warn("produce-test: no broker configured: writing and copying files only, no pl72/6s4t")

    def report(run: SimulatedRun) -> None:
        line = json.dumps(run.to_json()) if as_json else f"archived {run.archive_path} ({run.size} bytes, " \
            f"run {run.run_name}, job {run.job_id})"
        stdout.file.write(line + "\n")
        stdout.file.flush()

    simulate_supermusr(cfg, count, local_dir=output_dir, archive_dir=archive_dir, topic=topic,
                       instrument=instrument or "SuperMuSR",
                       metadata={"proposal_id": proposal} if proposal else None, size_mb=size_mb, chunk=chunk,
                       delay=delay, pause=pause, seed=seed, on_run=report)
