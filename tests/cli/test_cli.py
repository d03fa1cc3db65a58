"""The command line as an operator meets it: start-up imports, help, short options, errors, pipes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from scicat_fw_ingest.cli._app import COMMANDS, EXAMPLES, SHORT_OPTIONS, app
from scicat_fw_ingest.daemon.state import StateStore
from scicat_fw_ingest.testing.message_samples import SAMPLES
from scicat_fw_ingest.testing.sfi_process import sigint_as_from_a_terminal

HEAVY = ("h5py", "numpy", "confluent_kafka", "pyscicat", "streaming_data_types", "requests")


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SFI_")}, **extra}


def test_importing_the_cli_loads_no_heavy_library() -> None:
    code = ("import sys, scicat_fw_ingest.cli, scicat_fw_ingest.cli.ingest_file, scicat_fw_ingest.cli.config; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env())
    assert out.stdout.strip() == ""


def test_every_command_help_is_plain_fits_80_columns_and_ends_with_examples(sfi) -> None:
    for name in ["", *COMMANDS]:
        run = sfi(*([name] if name else []), "--help", env={"COLUMNS": "80"})
        assert run.returncode == 0, (name, run.stderr)
        text = run.stdout
        assert not re.search(r"<(bool|str|int|float|path|list\[)", text), name
        assert "{" not in text.split("\n", 3)[1], name  # the usage line: PATHS..., not {paths}
        assert all(len(line) <= 80 for line in text.splitlines()), name
        if name:
            tail = text[text.rindex("Examples:"):]
            shown = [line.strip() for line in tail.splitlines()[1:] if line.strip()]
            assert 2 <= len(EXAMPLES[name]) <= 3 and shown[0].startswith("sfi "), name
            assert "[default: " not in text, name  # one style: (default: X)


def test_short_options_mean_the_same_everywhere() -> None:
    from typer.core import TyperGroup
    from typer.main import get_command

    from scicat_fw_ingest.cli import _common  # noqa: F401  (the global options)

    group = get_command(app)
    assert isinstance(group, TyperGroup)
    ctx = group.make_context("sfi", ["--help"], resilient_parsing=True)
    seen: dict[str, set[str]] = {}
    for name in COMMANDS:
        command = group.get_command(ctx, name)
        assert command is not None, name
        for param in [*command.params, *group.params]:
            longs = [o for o in param.opts if o.startswith("--")]
            for short in (o for o in param.opts if re.fullmatch(r"-[a-zA-Z]", o)):
                seen.setdefault(short, set()).update(longs)
                assert SHORT_OPTIONS.get(short) in longs, (name, short, longs)
    assert all(len(longs) == 1 for longs in seen.values()), seen


def test_version_and_global_config_before_the_command(sfi, tmp_path: Path) -> None:
    version = sfi("--version")
    assert version.returncode == 0 and re.fullmatch(r"sfi \d+\.\d+\.\d+\S*\n", version.stdout)
    config = tmp_path / "sfi.toml"
    config.write_text("[ingest]\nworkers = 7\n")
    shown = sfi("--config", str(config), "config")
    assert shown.returncode == 0 and '"workers": 7' in shown.stdout, shown.stderr


def test_config_check_lists_every_problem_one_line_each(sfi, tmp_path: Path) -> None:
    config = tmp_path / "sfi.toml"
    config.write_text('[scicat]\nurl = "scicat.example.org"\n[defaults]\nownerGrop = "ess"\n'
                      f'[ingest]\nprofile_dirs = ["{tmp_path}/nowhere"]\npath_map = [["/w", "{tmp_path}/gone"]]\n'
                      '[listen]\nworkers = 0\n')
    run = sfi("-c", str(config), "config", "--check")
    assert run.returncode == 1 and run.stdout == ""
    problems = run.stderr.strip().splitlines()
    assert len(problems) == 5, problems
    assert all(line.startswith(f"sfi: error: config ({config}): ") for line in problems)
    for fragment in ("[scicat] url 'scicat.example.org'", "[defaults] ownerGrop", "nowhere: not a directory",
                     "data root", "[listen] workers: 0 must be >= 1"):
        assert any(fragment in line for line in problems), fragment
    good = tmp_path / "good.toml"
    good.write_text('[scicat]\nurl = "https://scicat.example.org/api/v3"\n[defaults]\nownerGroup = "ess"\n')
    ok = sfi("-c", str(good), "config", "--check")
    assert ok.returncode == 0 and "configuration OK" in ok.stdout


def test_listen_with_bad_defaults_exits_2_with_one_line_before_consuming(sfi, tmp_path: Path) -> None:
    config = tmp_path / "bad-defaults.toml"
    config.write_text('[defaults]\nownerGrop = "ess"\n')
    run = sfi("listen", "-c", str(config), "-t", "dream_filewriter", "-b", "127.0.0.1:1",
              "--state-dir", str(tmp_path / "state"), "--catalogue-dir", str(tmp_path / "cat"), timeout=30)
    assert run.returncode == 2
    [line] = run.stderr.strip().splitlines()
    assert "[defaults] ownerGrop: not a SciCat dataset field" in line
    assert not (tmp_path / "state").exists()  # nothing was started


def test_usage_errors_are_one_line_in_every_command(sfi) -> None:
    for args in (["ingest-file", "--checksum", "crc", "x.nxs"], ["decode"], ["no-such-command"]):
        run = sfi(*args)
        assert run.returncode == 2, args
        [line] = run.stderr.strip().splitlines()
        assert "error:" in line and "╭" not in run.stderr, args


def test_broken_pipe_exits_0(tmp_path: Path) -> None:
    message = tmp_path / "pl72.bin"
    message.write_bytes(SAMPLES["pl72"][0])
    sfi = [sys.executable, "-m", "scicat_fw_ingest", "decode", "--json", *[str(message)] * 3000]
    proc = subprocess.Popen(sfi, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()  # as `| head -1` does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and b"Traceback" not in err and b"Broken pipe" not in err


def test_retry_of_an_unknown_file_is_an_error(sfi, tmp_path: Path) -> None:
    StateStore(str(tmp_path)).close()
    run = sfi("retry", "/data/unknown.nxs", "--state-dir", str(tmp_path))
    assert run.returncode == 1
    assert run.stderr.strip() == ("sfi: error: retry: /data/unknown.nxs: not in the listener's state "
                                  "(see sfi failures)")


def test_shell_completion_script_is_offered() -> None:
    """``sfi --show-completion`` prints the script for the shell it runs in (detected from its parents)."""
    # A compound command keeps bash as the parent: with a single command bash may exec python in its place, and the
    # shell is then detected from whatever started bash (under a loaded parallel run, often nothing supported).
    run = subprocess.run(["bash", "-c", f"'{sys.executable}' -m scicat_fw_ingest --show-completion; exit $?"],
                         capture_output=True, text=True, env=_env(), check=False)
    assert run.returncode == 0, run.stderr
    assert "_SFI_COMPLETE" in run.stdout and "complete " in run.stdout  # bash's own `complete` builtin


def test_tables_abbreviate_ids_and_paths() -> None:
    from scicat_fw_ingest.cli._render import abbreviate_id, abbreviate_path

    assert abbreviate_id("20.500.12269/a34f2144-e316-4105-9182-e0463b2e1da9") == "a34f2144…"
    assert abbreviate_id("job-7") == "job-7" and abbreviate_id(None) == "-"
    long = "/ess/data/kafka-to-nexus/2024/dream/p2024001/raw/run_000123.nxs"
    short = abbreviate_path(long, 30)
    assert len(short) <= 30 and short.startswith("…/") and short.endswith("run_000123.nxs")
    assert abbreviate_path("/data/a.nxs", 30) == "/data/a.nxs"
    assert abbreviate_path("/" + "x" * 50 + ".nxs", 20).endswith("x.nxs")
    assert len(abbreviate_path("/" + "x" * 50, 20)) == 20


def test_ctrl_c_in_a_waiting_command_exits_130_without_traceback() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "scicat_fw_ingest", "decode", "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), start_new_session=True,
                            preexec_fn=sigint_as_from_a_terminal)
    time.sleep(3.0)  # started and blocked reading stdin
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and b"Traceback" not in err


def test_exit_when_idle_counts_time_without_any_assignment(tmp_path: Path) -> None:
    from scicat_fw_ingest.catalogue import CatalogueDir
    from scicat_fw_ingest.config import Config
    from scicat_fw_ingest.daemon.listen import ListenOptions, Listener
    from scicat_fw_ingest.ingest import Ingestor

    state = StateStore(str(tmp_path))
    ingestor = Ingestor(Config(), CatalogueDir(str(tmp_path / "catalogue")))
    listener = Listener(Config(), ListenOptions(topics=["no_such_topic"], exit_when_idle=2.0), ingestor=ingestor,
                        state=state)
    try:
        start = listener._last_message
        assert not listener._idle(start + 5.0)  # never assigned: a group join may take seconds
        assert listener._idle(start + 10.5)  # ... but not forever (it was: a missing topic never fired)
        listener._assigned = True
        assert listener._idle(start + 2.5)
    finally:
        state.close()


def test_config_check_names_bad_failover_numbers(sfi, tmp_path: Path) -> None:
    config = tmp_path / "sfi.toml"
    config.write_text('[scicat]\nurl = "https://scicat.example.org/api/v3"\ngrace = -1\n'
                      '[listen]\nheld_max = 0\ninflight_max = 0\ntakeover_wait = -5\nverify_after = 0\n')
    run = sfi("-c", str(config), "config", "--check")
    assert run.returncode == 1
    for fragment in ("[scicat] grace: -1.0 must be >= 0", "[listen] held_max: 0 must be >= 1",
                     "[listen] inflight_max: 0 must be >= 1", "[listen] takeover_wait: -5.0 must be >= 0",
                     "[listen] verify_after: 0.0 must be > 0"):
        assert fragment in run.stderr, (fragment, run.stderr)
