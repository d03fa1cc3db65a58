"""``python -m scicat_fw_ingest.testing.demo_watch``: a writer without wrdn (SuperMuSR), end to end.

1. starts an embedded Kafka-protocol broker (Tansu);
2. starts ``sfi watch`` on an archive directory, reading the writer's run messages from a topic;
3. ``sfi produce-test --writer supermusr`` plays the SuperMuSR nexus-writer: per run a pl72, the file
   written locally, a 6s4t, then the file copied slowly into the archive (pausing half-way, longer
   than the watcher's quiet period) and the original removed — no wrdn;
4. the watcher's log shows each half-copied file waited out; the datasets are listed.

Datasets go to ``$SFI_SCICAT_URL`` when it is set, else to a local catalogue directory. Everything
lands under ``./demo-watch-output``. Exits by itself (or on Ctrl-C).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .broker import TansuBroker

RUNS = 4
TOPIC = "demo_musr_runinfo"
console = Console(highlight=False)


def _say(text: str) -> None:
    console.print(f"\n[bold cyan]==>[/] [bold]{text}[/]")


def main() -> int:
    out = Path("demo-watch-output").resolve()
    shutil.rmtree(out, ignore_errors=True)
    local, archive = out / "writer-local", out / "archive"
    local.mkdir(parents=True)
    archive.mkdir()
    config = out / "sfi.toml"
    config.write_text('[defaults]\nowner = "Demo Muon Scientist"\nownerGroup = "musr"\n'
                      'contactEmail = "musr@facility.example"\nprincipalInvestigator = "Demo Muon Scientist"\n')
    with TansuBroker(log_path=out / "broker.log") as broker:
        _say(f"embedded Kafka-protocol broker (Tansu) on {broker.bootstrap}")
        env = {k: v for k, v in os.environ.items() if k != "SFI_CONFIG"}
        env.update(SFI_KAFKA_BOOTSTRAP=broker.bootstrap, SFI_STATE_DIR=str(out / "state"), SFI_CONFIG=str(config),
                   SFI_LISTEN_CATALOGUE_DIR=str(out / "catalogue"))
        from ..config import load_config
        from ..kafka import ensure_topics

        ensure_topics(load_config(None, env=env), [TOPIC])
        where = env.get("SFI_SCICAT_URL") or f"the local catalogue {out / 'catalogue'}"
        _say(f"sfi watch {archive} --topic {TOPIC} --quiet 0.5    (datasets go to {where})")
        watcher = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "watch", str(archive), "--topic", TOPIC,
                                    "--settle", "0.5", "--poll-interval", "0.2", "--processes", "0"], env=env)
        try:
            _say(f"sfi produce-test --writer supermusr --count {RUNS}: each file copied into the archive in "
                 "128 KB chunks, pausing 1.5 s half-way")
            produced = subprocess.run([sys.executable, "-m", "scicat_fw_ingest", "produce-test", "--writer",
                                       "supermusr", "-o", str(local), "--archive-dir", str(archive), "--count",
                                       str(RUNS), "--pool-topic", TOPIC, "--copy", "3,128,0.01,1.5", "--json"],
                                      env=env, text=True, capture_output=True, timeout=300)
            if produced.returncode != 0:
                raise SystemExit(f"demo: produce-test exited {produced.returncode}: {produced.stderr}")
            runs = [json.loads(line) for line in produced.stdout.splitlines() if line.strip()]
            _say("waiting for the watcher to ingest every archived file")
            found = _wait_for_datasets(out, env, len(runs))
        finally:
            watcher.send_signal(signal.SIGTERM)
            watcher.wait(60)
    table = Table(title=f"datasets created ({len(found)} of {len(runs)})", title_justify="left")
    for col in ("pid (= job id)", "datasetName", "proposalId", "bytes", "sha256"):
        table.add_column(col, overflow="fold")
    for ds, blocks in found:
        files = [f for b in blocks for f in b.get("dataFileList", [])]
        table.add_row(ds.get("pid", ""), ds.get("datasetName", ""), str(ds.get("proposalId", "")),
                      str(sum(int(f.get("size", 0)) for f in files)), (files[0].get("chk") or "")[:16] if files else "")
    console.print(table)
    ok = len(found) == len(runs)
    _say("done" if ok else "not every file became a dataset: see the watcher's log above")
    return 0 if ok else 1


def _wait_for_datasets(out: Path, env: dict[str, str],
                       expected: int) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    deadline = time.monotonic() + 60
    found: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    while time.monotonic() < deadline:
        found = [d for d in _datasets(out, env) if d[1]]
        if len(found) >= expected:
            break
        time.sleep(0.5)
    return found


def _datasets(out: Path, env: dict[str, str]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """What the watcher stored: the pids come from its state store (there are no job ids to expect)."""
    from .demo import _datasets as stored

    pids: list[str] = []
    if env.get("SFI_SCICAT_URL"):
        from ..daemon.state import StateStore

        state = StateStore(out / "state")
        pids = [r.pid for r in state.files(("created", "exists", "repaired")) if r.pid]
        state.close()
    return stored(out, env, pids)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
