"""The ingest package's seams: one ``Sink`` protocol both sinks fit, one ``Ingests`` protocol both ingestors fit, and
the light parts of ``ingest/`` and ``status/`` importable without h5py or confluent-kafka (start-up time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from scicat_fw_ingest.catalogue import CatalogueDir
from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.daemon.procpool import ProcessIngestor
from scicat_fw_ingest.ingest import Ingestor, Ingests, Sink
from scicat_fw_ingest.scicat import ScicatClient


def _protocol_methods(protocol: type) -> set[str]:
    return {name for name, value in vars(protocol).items() if not name.startswith("_") and callable(value)}


def test_both_sinks_offer_every_method_of_the_sink_protocol(tmp_path: Path) -> None:
    # mypy checks these assignments against the protocol (signatures too); the loop checks it at run time
    catalogue: Sink = CatalogueDir(tmp_path / "catalogue")
    client_type: type[Sink] = ScicatClient
    wanted = _protocol_methods(Sink)
    assert {"upsert", "get_dataset", "get_origdatablocks", "attach_preview", "ping", "close"} <= wanted
    for sink in (catalogue, client_type):
        missing = [name for name in wanted if not callable(getattr(sink, name, None))]
        assert not missing, f"{sink!r} lacks {missing}"


def test_both_ingestors_fit_what_the_daemons_call(tmp_path: Path) -> None:
    cfg = load_config(None, env={})
    in_process: Ingests = Ingestor(cfg, CatalogueDir(tmp_path / "catalogue"))
    worker_type: type[Ingests] = ProcessIngestor
    for ingestor in (in_process, worker_type):
        assert callable(ingestor.ingest) and callable(ingestor.close)
    in_process.close()  # closes its sink: the daemons release both kinds the same way


def _loaded_after(statement: str, modules: list[str]) -> list[str]:
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return run.stdout.split()


def test_the_light_parts_load_no_hdf5_and_no_kafka() -> None:
    heavy = ["h5py", "confluent_kafka", "scicat_fw_ingest.ingest._core", "scicat_fw_ingest.scicat"]
    assert _loaded_after("from scicat_fw_ingest.ingest.datablock import ALGORITHMS", heavy) == []
    assert _loaded_after("from scicat_fw_ingest.ingest import RunInfo, IngestResult, Sink, Ingests", heavy) == []
    assert _loaded_after("from scicat_fw_ingest.status import Tracker, Timeouts", heavy) == []
    # and the lazy names still resolve to the real thing
    assert _loaded_after("from scicat_fw_ingest.ingest import Ingestor", heavy) == [
        "h5py", "scicat_fw_ingest.ingest._core"]
