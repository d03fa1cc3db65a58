"""`daemon.runtime`: one function builds what `sfi listen` and `sfi watch` stand on, from the same `[listen]`."""

from __future__ import annotations

from pathlib import Path

import pytest

from scicat_fw_ingest.config import Config, load_config
from scicat_fw_ingest.daemon.procpool import ProcessIngestor
from scicat_fw_ingest.daemon.runtime import DaemonKind, build_runtime, lease_seconds, open_state
from scicat_fw_ingest.ingest import Ingestor


def _config(tmp_path: Path, processes: int) -> Config:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    path = tmp_path / "sfi.toml"
    path.write_text(
        f"[ingest]\ndata_roots = [\"{data}\"]\n"
        f"[listen]\nstate_dir = \"{tmp_path / 'state'}\"\ncatalogue_dir = \"{tmp_path / 'catalogue'}\"\n"
        f"processes = {processes}\nstate_busy_timeout = 3.5\nbad_messages_max = 7\nbad_messages_days = 2.5\n"
        "[kafka]\n\"session.timeout.ms\" = 10000\n"
    )
    return load_config(path, env={})


@pytest.mark.parametrize("kind", ["listen", "watch"])
def test_a_listen_state_option_reaches_the_store_of_both_daemons(tmp_path: Path, kind: DaemonKind) -> None:
    runtime = build_runtime(_config(tmp_path, processes=0), kind)
    try:
        store = runtime.state
        assert (store.busy_timeout, store.bad_max, store.bad_days) == (3.5, 7, 2.5)
        assert store.path == tmp_path / "state" / "sfi-state.sqlite3"
        assert isinstance(runtime.ingestor, Ingestor)
        assert runtime.ingestor.sink is runtime.sink
        assert runtime.where == f"local catalogue {tmp_path / 'catalogue'}"
    finally:
        runtime.close()
    runtime.close()  # a second close (a stop during close) does nothing


def test_the_listeners_worker_processes_are_fenced_and_the_watchers_are_not(tmp_path: Path) -> None:
    cfg = _config(tmp_path, processes=1)
    assert lease_seconds(cfg) == 8.0  # inside the 10 s Kafka session
    fences: dict[str, float] = {}
    kinds: tuple[DaemonKind, ...] = ("listen", "watch")
    for kind in kinds:
        runtime = build_runtime(cfg, kind)
        try:
            assert isinstance(runtime.ingestor, ProcessIngestor)
            fences[kind] = runtime.ingestor.fence_after
        finally:
            runtime.close()
    assert fences == {"listen": 8.0, "watch": 0.0}


def test_failures_and_retry_open_the_state_as_configured(tmp_path: Path) -> None:
    store = open_state(_config(tmp_path, processes=0))
    try:
        assert (store.busy_timeout, store.bad_max, store.bad_days) == (3.5, 7, 2.5)
    finally:
        store.close()
