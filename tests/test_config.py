"""One config model: flags > environment > TOML file > defaults; secrets masked; one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scicat_fw_ingest.config import SecretStr, load_config
from scicat_fw_ingest.errors import ConfigError

TOML = """
[kafka]
"bootstrap.servers" = "file-broker:9092"
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-256"
"sasl.username" = "sfi"
"sasl.password" = "kafka-pass-123"
"session.timeout.ms" = 10000

[scicat]
url = "https://scicat.example/api/v3"
token = "tok-secret-456"
username = "ingestor"
password = "sci-pass-789"
timeout = 12

[defaults]
contactEmail = "data@facility.example"
ownerGroup = "ess"

[ingest]
checksum = "blake2b"
path_map = [["/writer/data", "/mnt/data"]]
"""

SECRETS = ("kafka-pass-123", "tok-secret-456", "sci-pass-789")


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sfi.toml"
    path.write_text(TOML)
    return path


def test_file_values_are_loaded_and_kafka_passes_verbatim(config_file: Path) -> None:
    cfg = load_config(config_file, env={})
    assert cfg.kafka == {"bootstrap.servers": "file-broker:9092", "security.protocol": "SASL_SSL",
                         "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "sfi",
                         "sasl.password": "kafka-pass-123", "session.timeout.ms": 10000}
    assert cfg.scicat.url == "https://scicat.example/api/v3" and cfg.scicat.timeout == 12.0
    assert cfg.scicat.token is not None and cfg.scicat.token.get_secret_value() == "tok-secret-456"
    assert cfg.defaults == {"contactEmail": "data@facility.example", "ownerGroup": "ess"}
    assert cfg.ingest.checksum == "blake2b" and cfg.ingest.path_map == [["/writer/data", "/mnt/data"]]


def test_precedence_flags_over_env_over_file_over_defaults(config_file: Path) -> None:
    env = {"SFI_KAFKA_BOOTSTRAP": "env-broker:1", "SFI_SCICAT_URL": "http://env/api/v3", "SFI_CONFIG": "/nope"}
    cfg = load_config(config_file, env=env, overrides={"kafka": {"bootstrap.servers": "flag-broker:2"},
                                                       "scicat": {"url": None}})
    assert cfg.bootstrap == "flag-broker:2"  # flag wins
    assert cfg.scicat.url == "http://env/api/v3"  # env wins over file; a None flag is "not given"
    assert cfg.scicat.username == "ingestor"  # file wins over default
    assert cfg.listen.group == "sfi-listen"  # default


def test_config_path_from_environment(config_file: Path) -> None:
    cfg = load_config(None, env={"SFI_CONFIG": str(config_file)})
    assert cfg.source == config_file and cfg.bootstrap == "file-broker:9092"


def test_env_variables_for_every_secret_and_section() -> None:
    env = {"SFI_SCICAT_TOKEN": "t0k", "SFI_SCICAT_USERNAME": "u", "SFI_SCICAT_PASSWORD": "p",
           "SFI_STATE_DIR": "/var/lib/sfi", "SFI_INGEST_WORKERS": "8", "SFI_LISTEN_TOPICS": "a, b",
           "SFI_INGEST_PATH_MAP": "/w=/l"}
    cfg = load_config(None, env=env)
    assert cfg.scicat.token == SecretStr("t0k") and cfg.scicat.password == SecretStr("p")
    assert cfg.listen.state_dir == "/var/lib/sfi" and cfg.ingest.workers == 8
    assert cfg.listen.topics == ["a", "b"] and cfg.ingest.path_map == [["/w", "/l"]]


def test_secrets_never_in_repr_or_dump(config_file: Path) -> None:
    cfg = load_config(config_file, env={})
    for text in (repr(cfg), str(cfg), json.dumps(cfg.masked()), repr(cfg.scicat), str(cfg.scicat.token)):
        for secret in SECRETS:
            assert secret not in text
    assert cfg.masked()["kafka"]["sasl.password"] == "***"
    assert cfg.masked()["kafka"]["sasl.username"] == "sfi"


def test_sfi_config_command_masks_secrets(config_file: Path, sfi) -> None:
    run = sfi("config", "--config", str(config_file), env={"SFI_SCICAT_PASSWORD": "env-secret-000"})
    assert run.returncode == 1  # /mnt/data (a path_map data root) does not exist here: listed, config still shown
    assert "data root '/mnt/data'" in run.stderr
    shown = json.loads(run.stdout)
    assert shown["scicat"]["password"] == "***" and shown["kafka"]["bootstrap.servers"] == "file-broker:9092"
    for secret in (*SECRETS, "env-secret-000"):
        assert secret not in run.stdout + run.stderr


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[scicat]\ntimeout = 'fast'\n", "[scicat] timeout: expected a number"),
        ("[ingest]\nchecksum = 'crc32'\n", "[ingest] checksum: must be one of sha256, blake2b, md5, none"),
        ("[ingest]\nworkers = true\n", "[ingest] workers: expected an integer, got a boolean"),
        ("[ingest]\npath_map = [['/only-one']]\n", "[ingest] path_map: must be a list of"),
        ("[scicat]\nurll = 'x'\n", "[scicat] urll: unknown key"),
        ("[scicatt]\nurl = 'x'\n", "unknown table [scicatt]"),
        ("[kafka]\n'bootstrap.servers' = ['a']\n", "[kafka] bootstrap.servers: must be a string"),
        ("[scicat\nurl = 'x'\n", "not valid TOML"),
    ],
)
def test_bad_config_file_names_file_key_and_problem(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="environment variable SFI_INGEST_WORKERS: invalid literal"):
        load_config(None, env={"SFI_INGEST_WORKERS": "many"})


def test_bad_config_on_the_command_line_is_one_line_exit_2(tmp_path: Path, sfi) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[ingest]\nchecksum = 'crc32'\n")
    run = sfi("decode", "--config", str(path), "--topic", "t")
    assert run.returncode == 2
    assert run.stderr.strip().count("\n") == 0 and "bad.toml: [ingest] checksum" in run.stderr
    missing = sfi("config", "--config", str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and "none.toml: not found" in missing.stderr
