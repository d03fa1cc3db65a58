"""Data roots: a path outside them (absolute, ``..``, a symlink out, relative) is ``rejected`` and never opened."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.ingest import IngestResult, Ingestor, explicit_roots
from scicat_fw_ingest.simulate import SimulatedJob as Job
from scicat_fw_ingest.testing.listener import DEFAULTS_TOML, write_ess_file


def ingestor_for(tmp_path: Path, root: Path, **ingest: object) -> Ingestor:
    cfg_file = tmp_path / "sfi.toml"
    cfg_file.write_text(f'{DEFAULTS_TOML}\n[ingest]\nchecksum = "none"\nfile_wait = 0.5\n'
                        f'path_map = [["/writer/data", "{root}"]]\n')
    cfg = load_config(cfg_file, env={}, overrides={"ingest": ingest})
    return Ingestor(cfg, None, require_roots=True)


def ingest_within(ingestor: Ingestor, path: str, seconds: float = 20.0) -> IngestResult:
    """Ingest in a thread: opening a FIFO would block forever, so a hang fails the test instead of hanging it."""
    box: list[IngestResult] = []
    thread = threading.Thread(target=lambda: box.append(ingestor.ingest(path)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert box, f"ingesting {path} did not return within {seconds} s: something opened the FIFO"
    return box[0]


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    job = Job(filename="good.nxs", run_name="good", instrument_name="DREAM")
    write_ess_file(root / "good.nxs", job)
    write_ess_file(outside / "x.nxs", job)
    fifo = outside / "trap.nxs"
    os.mkfifo(fifo)  # a reader opening this blocks until a writer comes: none ever does
    (root / "link-out.nxs").symlink_to(fifo)
    (root / "dir-out").symlink_to(outside)
    return {"root": root, "outside": outside, "fifo": fifo}


def test_a_file_inside_the_root_is_ingested(tmp_path, layout) -> None:
    result = ingest_within(ingestor_for(tmp_path, layout["root"]), "/writer/data/good.nxs")
    assert result.status == "dry-run" and result.error is None


@pytest.mark.parametrize("writer_path, rule", [
    ("/etc/passwd", "outside the data roots"),
    ("/writer/data/../outside/x.nxs", "outside the data roots"),
    ("/writer/data/../outside/trap.nxs", "outside the data roots"),
    ("/writer/data/link-out.nxs", "resolves to"),
    ("/writer/data/dir-out/trap.nxs", "resolves to"),
    ("relative/run.nxs", "relative writer path"),
])
def test_paths_outside_the_roots_are_rejected_never_opened(tmp_path, layout, writer_path, rule) -> None:
    before = os.stat(layout["outside"] / "x.nxs").st_atime_ns
    result = ingest_within(ingestor_for(tmp_path, layout["root"]), writer_path)
    assert result.status == "rejected" and not result.retryable, result
    error = result.error or ""
    assert "rejected" in error and rule in error and writer_path.split("/")[-1] in error
    assert "\n" not in error
    assert os.stat(layout["outside"] / "x.nxs").st_atime_ns == before


def test_configured_data_roots_replace_the_path_map_default(tmp_path, layout) -> None:
    ingestor = ingestor_for(tmp_path, layout["root"], data_roots=[str(layout["outside"])])
    assert ingestor.data_roots == [os.path.realpath(layout["outside"])]
    assert ingest_within(ingestor, "/writer/data/good.nxs").status == "rejected"
    fifo = ingest_within(ingestor, str(layout["fifo"]))  # inside the root: still never opened (not a file)
    assert fifo.status == "failed" and "not a regular file" in (fifo.error or "")


def test_no_root_at_all_rejects_every_path_from_others(tmp_path, layout) -> None:
    cfg = load_config(None, env={}, overrides={})
    result = Ingestor(cfg, None, require_roots=True).ingest(str(layout["root"] / "good.nxs"))
    assert result.status == "rejected" and "no data root" in (result.error or "")
    # a library caller naming the file itself, with no root configured, is not restricted
    assert Ingestor(cfg, None).ingest(str(layout["root"] / "good.nxs")).status == "dry-run"


def test_explicit_roots_of_command_line_arguments(tmp_path) -> None:
    assert explicit_roots(["/data/2024/*.nxs", "/data/x.nxs", "runs/", "/a/b*/c"]) == [
        "/data/2024/", "/data/x.nxs", "runs/", "/a"]


def test_ingest_file_rejects_a_symlink_out_of_a_named_folder(tmp_path, layout, sfi) -> None:
    (tmp_path / "sfi.toml").write_text(DEFAULTS_TOML + '[ingest]\nchecksum = "none"\n')
    # the named folder and the working directory are the data roots; the symlink leads out of both
    run = sfi("ingest-file", "--dry-run", "--json", "--pattern", "*.nxs", str(layout["root"]), "-c",
              str(tmp_path / "sfi.toml"), cwd=layout["root"], timeout=60)
    rows = {Path(r["file"]).name: r for r in map(json.loads, run.stdout.splitlines())}
    assert rows["good.nxs"]["status"] == "dry-run"
    assert rows["link-out.nxs"]["status"] == "rejected" and "outside the data roots" in rows["link-out.nxs"]["error"]
    assert run.returncode == 1


def test_listen_refuses_to_start_without_a_data_root(tmp_path, sfi) -> None:
    run = sfi("listen", "-b", "127.0.0.1:1", "--topic", "t", "--state-dir", str(tmp_path / "s"), timeout=30)
    assert run.returncode == 2 and "no data root" in run.stderr and "Traceback" not in run.stderr
