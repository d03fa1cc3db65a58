"""Secrets never shown: URL credentials masked in ``sfi config`` and errors, no secret echoed by a config error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scicat_fw_ingest.config import load_config, mask_url_credentials
from scicat_fw_ingest.errors import ConfigError


def test_url_credentials_are_masked_in_text() -> None:
    assert mask_url_credentials("https://ingestor:s3cret@scicat.example/api/v3") == \
        "https://ingestor:***@scicat.example/api/v3"
    assert mask_url_credentials("no url here: a:b@c") == "no url here: a:b@c"
    assert mask_url_credentials("see http://h:1/x and sasl+ssl://u:p%40ss@b:9093") == \
        "see http://h:1/x and sasl+ssl://u:***@b:9093"


def test_sfi_config_masks_url_credentials(tmp_path: Path, sfi) -> None:
    cfg = tmp_path / "sfi.toml"
    cfg.write_text('[scicat]\nurl = "https://ingestor:hunter22@scicat.example/api/v3"\n')
    run = sfi("config", "-c", str(cfg))
    # shown masked, and a problem: requests would send them as Basic auth in place of the SciCat token
    assert run.returncode == 1 and "holds credentials" in run.stderr, run.stderr
    assert "hunter22" not in run.stdout + run.stderr
    assert json.loads(run.stdout)["scicat"]["url"] == "https://ingestor:***@scicat.example/api/v3"
    env_run = sfi("config", env={"SFI_SCICAT_URL": "http://u:pw123456@localhost:1/api/v3"})
    assert "pw123456" not in env_run.stdout + env_run.stderr
    assert "url 'http://localhost:1/api/v3': holds credentials" in env_run.stderr  # the port is kept


def test_masked_urls_keep_host_and_port_as_written() -> None:
    from scicat_fw_ingest.config import masked_url
    from scicat_fw_ingest.scicat._transport import safe_url

    for url, shown in [("http://u:pw@scicat.example:3000/api/v3?access_token=t0k3n", "http://scicat.example:3000/api/v3"),
                       ("https://u:pw@[::1]:8443/api/v4#x", "https://[::1]:8443/api/v4"),
                       ("http://u:pw@Host:notaport/api/v3", "http://Host:notaport/api/v3"),
                       ("u:pw@host:1/api/v3", "host:1/api/v3")]:
        assert safe_url(url) == masked_url(url) == shown


@pytest.mark.parametrize("text", ['[scicat]\npassword = 123456789\n', '[scicat]\ntoken = 987654321\n',
                                  '[scicat]\npassword = true\n', '[scicat]\npassword = ["hunter2hunter2"]\n'])
def test_a_config_error_never_echoes_a_secret_value(tmp_path: Path, text: str, sfi) -> None:
    path = tmp_path / "sfi.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    message = str(caught.value)
    for secret in ("123456789", "987654321", "hunter2hunter2", "True"):
        assert secret not in message
    assert "expected a string" in message and "not shown" in message
    run = sfi("config", "-c", str(path))
    assert run.returncode == 2 and "123456789" not in run.stderr and "987654321" not in run.stderr


def test_a_config_error_about_a_url_masks_its_password(tmp_path: Path) -> None:
    path = tmp_path / "sfi.toml"
    path.write_text('[scicat]\nurl = ["https://u:topsecret@h/api/v3"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert "topsecret" not in str(caught.value)


def test_a_token_echoed_by_the_server_is_scrubbed_before_it_is_stored(tmp_path: Path) -> None:
    from urllib.parse import quote

    from scicat_fw_ingest._logging import register_secret
    from scicat_fw_ingest.daemon.record import record_outcome
    from scicat_fw_ingest.daemon.state import StateStore
    from scicat_fw_ingest.ingest import IngestResult

    token = "Tok/en+with=special&chars-0123456789"
    register_secret(token)
    echoed = (f"SciCat POST Datasets: 400 Bad Request: {{'message': 'invalid header Bearer {quote(token, safe='')}', "
              f"'echo': '{token}', 'jwt': 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'}}")
    store = StateStore(tmp_path / "state")
    record_outcome(store, "/d/a.nxs", IngestResult("/d/a.nxs", None, "failed", error=echoed), job_id=None,
                   writer_path="/d/a.nxs", source="t/0@1", wrdn=b"")
    record = store.get_file("/d/a.nxs")
    assert record is not None and record.error is not None
    stored = record.error
    assert token not in stored and quote(token, safe="") not in stored and "eyJzdWIi" not in stored
    assert stored.startswith("SciCat POST Datasets: 400 Bad Request")
