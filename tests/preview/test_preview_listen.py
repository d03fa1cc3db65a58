"""`sfi listen` draws each file's preview in its worker processes and attaches it once (issue 22)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from scicat_fw_ingest.testing.listener import config_file, listener, make_jobs, publish, wait_for
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

pytestmark = [pytest.mark.kafka]


def test_listen_attaches_one_preview_per_dataset(tmp_path: Path, kafka_config, kafka_bootstrap, topic) -> None:
    data_dir = tmp_path / "data"
    jobs = make_jobs(data_dir, 3, topic=topic)
    for job in jobs[:2]:  # two files with events, one with metadata only
        with h5py.File(data_dir / job.filename, "a") as fh:
            events = fh["entry"].create_group("bank0_events")
            events.attrs["NX_class"] = "NXevent_data"
            tof = events.create_dataset("event_time_offset", data=np.arange(5000, dtype="u4") * 13 % 70_000)
            tof.attrs["units"] = "ns"
    cfg_path = config_file(tmp_path, data_dir)
    publish(kafka_config, jobs)
    with ScicatTestServer() as scicat:
        proc = listener(tmp_path, "p", bootstrap=kafka_bootstrap, scicat=scicat, cfg_path=cfg_path, topic=topic,
                        group=f"g-{topic}", extra=["--processes", "1"]).start()
        try:
            wait_for(lambda: len(scicat.origdatablocks) == 3 and len(scicat.attachments) == 2, 60,
                     "three datasets, two previews")
        finally:
            assert proc.terminate() == 0, proc.log()[-3000:]
        by_dataset = sorted(a["datasetId"].rsplit("/", 1)[-1] for a in scicat.attachments.values())
        assert by_dataset == sorted(job.job_id for job in jobs[:2])
        assert all(a["thumbnail"].startswith("data:image/png;base64,iVBORw0KGgo") for a in scicat.attachments.values())
        assert all("time-of-flight spectrum of 5,000 events" in a["caption"] for a in scicat.attachments.values())
