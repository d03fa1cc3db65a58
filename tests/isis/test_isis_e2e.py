"""The whole ISIS path in one test: ICP run start -> forward-runinfo -> file -> ingest-file -> SciCat.

The file is written by produce-test's NeXus writer from the structure that came out on the output
topic, exactly as kafka-to-nexus would lay it out, then ingested with the ISIS profile into the
SciCat test server (real HTTP).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import h5py
import pytest

from scicat_fw_ingest.config import Config
from scicat_fw_ingest.kafka import ensure_topics
from scicat_fw_ingest.nexus.writer import write_nexus
from scicat_fw_ingest.testing.isis_run_start import produce, read_run_starts, run_start_bytes
from scicat_fw_ingest.testing.nexus_files import finished
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

pytestmark = pytest.mark.kafka

DEFAULTS = ('[defaults]\ncontactEmail = "data@isis.example"\nowner = "ingestor"\nownerGroup = "isis"\n'
            'principalInvestigator = "Unknown PI"\n')


def test_icp_run_start_to_catalogue(sfi, kafka_bootstrap: str, kafka_config: Config, tmp_path: Path,
                                    scicat_server: ScicatTestServer) -> None:
    tag = uuid.uuid4().hex[:8]
    inst, out = f"ZOOM{tag}", f"ALL_runInfo_{tag}"
    ensure_topics(kafka_config, [f"{inst}_runInfo", out])
    job = str(uuid.uuid4())
    produce(kafka_config, f"{inst}_runInfo", run_start_bytes(job_id=job, filename=f"{inst}00012345.nxs"))
    config = tmp_path / "sfi.toml"
    config.write_text(f'[isis]\nsample_env = {{{inst} = ["Temp_1", "Pressure=IN:ZOOM:P1"]}}\n'
                      f'monitors = {{"*" = ["monitor_1"]}}\n' + DEFAULTS)
    run = sfi("forward-runinfo", "-b", kafka_bootstrap, "-c", str(config), "--instruments", inst,
              "--output-topic", out, "--group", f"g_{tag}", "--from-beginning", "--once")
    assert run.returncode == 0, run.stderr
    [start] = read_run_starts(kafka_config, out)

    path = tmp_path / start.filename
    report = write_nexus(path, start.nexus_structure, start_time_ms=start.start_time, stop_time_ms=start.stop_time)
    finished(path)  # closed and 0440, as kafka-to-nexus leaves it: complete for ingest-file at once

    with h5py.File(path, "r") as h5:
        assert h5["raw_data_1/instrument/source/name"].asstr()[()] == "ISIS"
        assert h5["raw_data_1/instrument/name"].asstr()[()] == inst
        assert h5["raw_data_1/detector_1_events"].attrs["NX_class"] in ("NXevent_data", b"NXevent_data")
        assert "event_time_offset" in h5["raw_data_1/detector_1_events"]  # the ICP's ev44 stream, written
        assert "value" in h5["raw_data_1/selog/Temp_1"]  # the ICP's own block
        assert "value" in h5["raw_data_1/selog/Pressure/value_log"]  # a configured block

    env = {"SFI_SCICAT_URL": scicat_server.url, "SFI_SCICAT_TOKEN": scicat_server.token,
           "SFI_SCICAT_BACKOFF": "0.01"}
    ingest = sfi("ingest-file", str(path), "--profile", "isis", "--json", "-c", str(config), env=env)
    assert ingest.returncode == 0, ingest.stderr
    record = json.loads(ingest.stdout.splitlines()[0])
    assert record["status"] == "created", record
    dataset = scicat_server.datasets[record["pid"]]
    assert dataset["creationLocation"] == f"ISIS:{inst}"
    assert dataset["datasetName"] == "Sample scan"
    assert dataset["runNumber"] == "12345"
    assert dataset["proposalId"] == "2410001"
    scientific = {key: value["value"] for key, value in dataset["scientificMetadata"].items()}
    assert scientific["instrument_name"] == scientific["beamline"] == inst  # from the enriched file
    assert scientific["start_time"] == "2023-11-14T22:13:20Z"  # mdat, from the run start's times
    assert report.warnings == []
    assert len(scicat_server.origdatablocks[record["pid"]]) == 1
