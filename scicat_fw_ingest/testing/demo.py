"""``make demo``: the main job, end to end, on embedded defaults.

1. starts an embedded Kafka-protocol broker (Tansu);
2. starts ``sfi listen`` on the file writer's control topic;
3. ``sfi produce-test`` plays a file writer: three complete jobs, each with a real NeXus file;
4. shows one job's messages decoded (``sfi decode``), the datasets created, and the writer's jobs
   as ``sfi list-status`` sees them.

Datasets go to ``$SFI_SCICAT_URL`` when it is set (with ``SFI_SCICAT_TOKEN`` or username and
password), else to a local catalogue directory as the exact JSON documents SciCat would receive
(``sfi push-catalogue DIR`` sends them later). Everything lands under ``./demo-output``.
Exits by itself (or on Ctrl-C).
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

JOBS = 3
TOPIC = "demo_control"
console = Console(highlight=False)


def _say(text: str) -> None:
    console.print(f"\n[bold cyan]==>[/] [bold]{text}[/]")


def _sfi(*args: str, env: dict[str, str], capture: bool = False,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "scicat_fw_ingest", *args], env=env, text=True,
                          capture_output=capture, timeout=120)
    if check and proc.returncode != 0:
        raise SystemExit(f"demo: 'sfi {' '.join(args)}' exited {proc.returncode}: {proc.stderr or ''}".strip())
    return proc


def _datasets(out: Path, env: dict[str, str], pids: list[str]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    if env.get("SFI_SCICAT_URL"):
        from ..config import load_config
        from ..scicat import ScicatClient

        client = ScicatClient.from_config(load_config(None, env=env).scicat)
        try:
            return [(client.get_dataset(pid) or {"pid": pid}, client.get_origdatablocks(pid)) for pid in pids]
        finally:
            client.close()
    from ..catalogue import CatalogueDir

    # entries(), not iter_documents(): this polls while the listener writes, and a dataset whose datablock is not
    # written yet is "not there yet" here, not a damaged catalogue
    return [(entry.dataset, entry.datablocks) for entry in CatalogueDir(out / "catalogue").entries()
            if entry.dataset is not None and entry.error is None]


def main() -> int:
    out = Path("demo-output").resolve()
    shutil.rmtree(out, ignore_errors=True)
    (out / "data").mkdir(parents=True)
    with TansuBroker(log_path=out / "broker.log") as broker:
        _say(f"embedded Kafka-protocol broker (Tansu) on {broker.bootstrap}")
        env = {k: v for k, v in os.environ.items() if k != "SFI_CONFIG"}
        env.update(SFI_KAFKA_BOOTSTRAP=broker.bootstrap, SFI_STATE_DIR=str(out / "state"),
                   SFI_INGEST_DATA_ROOTS=str(out / "data"),  # the listener reads only inside its data roots
                   SFI_LISTEN_CATALOGUE_DIR=str(out / "catalogue"))
        from ..config import load_config
        from ..kafka import ensure_topics

        ensure_topics(load_config(None, env=env), [TOPIC])
        where = env.get("SFI_SCICAT_URL") or f"the local catalogue {out / 'catalogue'} (no SFI_SCICAT_URL set)"
        _say(f"sfi listen --topic {TOPIC}    (datasets go to {where})")
        listener = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "listen", "--topic", TOPIC,
                                     "--auto-offset-reset", "earliest"], env=env)
        try:
            _say(f"sfi produce-test --count {JOBS}: a simulated file writer writes {JOBS} NeXus files and "
                 "publishes each job")
            produced = _sfi("produce-test", "--count", str(JOBS), "--output-dir", str(out / "data"),
                            "--control-topic", TOPIC, "--json", env=env, capture=True)
            jobs = [json.loads(line) for line in produced.stdout.splitlines() if line.strip()]
            for job in jobs:
                console.print(f"    job {job['job_id']}  ->  {job['file']}")

            _say("sfi decode --topic demo_control --count 7: the first job as the writer told it")
            _sfi("decode", "--topic", TOPIC, "--from-beginning", "--count", "7", env=env)

            _say("waiting for the listener to ingest every finished file")
            pids = [job["job_id"] for job in jobs]
            deadline = time.monotonic() + 60
            found: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
            while time.monotonic() < deadline:
                found = [d for d in _datasets(out, env, pids) if d[1]]
                if len(found) >= len(jobs):
                    break
                time.sleep(0.5)
        finally:
            listener.send_signal(signal.SIGTERM)
            listener.wait(60)
        table = Table(title=f"datasets created ({len(found)} of {len(jobs)})", title_justify="left")
        for col in ("pid", "datasetName", "proposalId", "files", "bytes"):  # one line per dataset at 80 columns
            table.add_column(col, no_wrap=True, overflow="ellipsis", min_width={"proposalId": 10, "files": 5,
                             "bytes": 7}.get(col), max_width={"pid": 18, "datasetName": 22}.get(col))
        for ds, blocks in found:
            files = sum(len(b.get("dataFileList", [])) for b in blocks)
            size = sum(int(b.get("size", 0)) for b in blocks)
            table.add_row(ds.get("pid", ""), ds.get("datasetName", ""), str(ds.get("proposalId", "")), str(files),
                          str(size))
        console.print(table)

        _say("sfi list-status: the writer's jobs")
        _sfi("list-status", "--topic", TOPIC, "--from-beginning", env=env, check=False)
        if not env.get("SFI_SCICAT_URL"):
            console.print(f"\nThe documents are in {out / 'catalogue'}; send them to a SciCat with\n"
                          f"    SFI_SCICAT_URL=https://scicat.example/api/v3 SFI_SCICAT_TOKEN=... "
                          f"sfi push-catalogue {out / 'catalogue'}\n"
                          "or run the same pipeline into the real SciCat backend (../shared/scicat-backend):\n"
                          "    make demo-scicat")
        ok = len(found) == len(jobs)
        _say("done" if ok else "not every file became a dataset: see the listener's log above")
        return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
