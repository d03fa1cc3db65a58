"""Preview pictures (issue 22): what each kind of file shows, bounded reads, the PNG, ``sfi preview``,
``ingest-file --dry-run --preview-dir``/``--no-preview``, and the catalogue sink that keeps and pushes them."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

from scicat_fw_ingest.catalogue import CatalogueDir, push_catalogue
from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.ingest import Ingestor
from scicat_fw_ingest.preview import NoPreview, Preview, find_plot, make_preview
from scicat_fw_ingest.preview._events import sample_events
from scicat_fw_ingest.scicat import ScicatClient
from scicat_fw_ingest.testing.nexus_files import write_ess, write_isis
from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

DEFAULTS = {"ownerGroup": "ess", "owner": "Ada", "contactEmail": "ada@example.org",
            "principalInvestigator": "Ada Lovelace", "creationLocation": "ESS:LOKI", "accessGroups": ["ess"]}


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def write_default_plot(path: Path, signal: np.ndarray, *, chain: bool = True) -> Path:
    with h5py.File(path, "w") as fh:
        entry = fh.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs["NX_class"] = "NXdata"
        data.attrs["signal"] = "intensity"
        if chain:
            fh.attrs["default"] = "entry"
            entry.attrs["default"] = "data"
        s = data.create_dataset("intensity", data=signal)
        s.attrs["units"] = "counts"
        if signal.ndim == 1:
            data.attrs["axes"] = ["wavelength"]
            data.create_dataset("wavelength", data=np.linspace(1, 10, signal.shape[0] + 1)).attrs["units"] = "Å"
        else:
            data.attrs["axes"] = ["y", "x"]
            data.create_dataset("y", data=np.arange(signal.shape[0], dtype=float)).attrs["units"] = "mm"
            x = data.create_dataset("x", data=np.arange(signal.shape[1], dtype=float) * 0.5)
            x.attrs["units"] = "mm"
            x.attrs["long_name"] = "horizontal position"
    return path


def test_default_plot_1d_is_a_line_with_axis_names_and_units(tmp_path: Path) -> None:
    path = write_default_plot(tmp_path / "a.nxs", np.random.default_rng(1).poisson(50, 300).astype("f8"))
    kind, plot = find_plot(path)  # type: ignore[misc]
    assert kind == "default plot" and plot.kind == "line"
    assert (plot.x_label, plot.y_label) == ("wavelength [Å]", "intensity [counts]")
    assert plot.x is not None and plot.y is not None
    assert len(plot.x) == 301 and len(plot.y) == 300  # bin edges kept: drawn as a histogram
    made = make_preview(path)
    assert isinstance(made, Preview) and png_size(made.png) == (400, 300) and 2_000 < len(made.png) < 100_000
    assert made.caption == "Preview (sfi): intensity [counts] against wavelength [Å] (/entry/data/intensity)"
    assert made.data_uri.startswith("data:image/png;base64,iVBORw0KGgo")


def test_default_plot_2d_is_an_image_read_strided_when_large(tmp_path: Path) -> None:
    path = write_default_plot(tmp_path / "b.nxs", np.ones((2048, 1024), dtype="u4"))
    _, plot = find_plot(path)  # type: ignore[misc]
    assert plot.kind == "image" and plot.image is not None and plot.image.size <= 1 << 20
    labels = (plot.x_label, plot.y_label, plot.value_label)
    assert labels == ("horizontal position [mm]", "y [mm]", "intensity [counts]")
    assert "every 2×1-th point" in plot.what
    assert isinstance(make_preview(path), Preview)


def test_without_a_default_chain_event_data_then_reasons(tmp_path: Path) -> None:
    unchained = write_default_plot(tmp_path / "c.nxs", np.ones(10), chain=False)
    found = find_plot(unchained)
    assert isinstance(found, NoPreview)
    assert [k for k, _ in found.reasons] == ["default plot", "event data", "ISIS histogram"]
    assert "neither the file nor an NXentry has a `default` attribute" in found.reason
    with h5py.File(unchained, "a") as fh:  # NeXus: the entry's own @default is enough without the file's
        fh["entry"].attrs["default"] = "data"
    assert find_plot(unchained)[0] == "default plot"  # type: ignore[index]
    events = write_ess(tmp_path / "ev.nxs", events=50_000)
    kind, plot = find_plot(events)  # type: ignore[misc]
    assert kind == "event data" and plot.x_label == "event_time_offset [ns]"
    assert plot.y is not None and plot.y.sum() == 50_000 and "50,000 events" in plot.what


def test_event_sample_is_bounded_and_spread_over_the_run(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "s.h5", "w") as fh:
        ds = fh.create_dataset("v", data=np.arange(100_000, dtype="u4"), chunks=(4096,))
        sample = sample_events(ds, budget=1000, blocks=4)
    assert sample.size == 1000 and sample.min() == 0 and sample.max() == 99_999  # first and last blocks


def test_counts_per_pixel_without_time_of_flight(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "p.nxs", "w") as fh:
        ev = fh.create_group("entry").create_group("bank")
        fh["entry"].attrs["NX_class"] = "NXentry"
        ev.attrs["NX_class"] = "NXevent_data"
        ev.create_dataset("event_id", data=np.array([3, 3, 4, 7], dtype="u4"))
    _, plot = find_plot(tmp_path / "p.nxs")  # type: ignore[misc]
    assert plot.x_label == "event_id (pixel)" and list(plot.y) == [2, 1, 0, 0, 1]  # type: ignore[arg-type]


def test_isis_histogram_summed_spectrum_of_the_real_file(shared_data: Path) -> None:
    path = shared_data / "isis_loq_minimal_histogram.nxs"
    kind, plot = find_plot(path)  # type: ignore[misc]
    with h5py.File(path) as fh:
        expected = fh["raw_data_1/detector_1/counts"][()].sum(axis=(0, 1))
    assert kind == "ISIS histogram" and list(plot.y) == list(expected.astype(float))  # type: ignore[arg-type]
    assert plot.x_label == "time_of_flight [microseconds]" and "17,792 spectra" in plot.what


def test_a_file_with_nothing_to_draw_says_why(shared_data: Path) -> None:
    found = find_plot(shared_data / "ess_coda_small.hdf")
    assert isinstance(found, NoPreview)
    assert "no NXevent_data group" in found.reason and "has a `default` attribute" in found.reason


# -- the command line ---------------------------------------------------------------------------------------
def test_importing_the_preview_command_loads_no_drawing_library() -> None:
    code = ("import sys, scicat_fw_ingest.cli.preview; "
            "print(' '.join(m for m in ('matplotlib', 'h5py', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_sfi_preview_writes_the_png_and_explains(sfi, tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "loq.png"
    run = sfi("preview", str(shared_data / "isis_loq_minimal_histogram.nxs"), "-o", str(out), "--json")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["kind"] == "ISIS histogram" and png_size(out.read_bytes()) == (400, 300)
    explain = sfi("preview", str(shared_data / "ess_coda_small.hdf"), "--explain")
    assert explain.returncode == 0 and "no picture" in explain.stdout and "no NXevent_data group" in explain.stdout
    none = sfi("preview", str(shared_data / "ess_coda_small.hdf"), "-o", str(tmp_path / "x.png"))
    assert none.returncode == 1 and none.stderr.count("\n") == 1 and "no picture" in none.stderr
    (tmp_path / "text.nxs").write_text("not HDF5")
    garbage = sfi("preview", str(tmp_path / "text.nxs"))
    assert garbage.returncode == 1 and garbage.stderr.endswith("text.nxs: not an HDF5/NeXus file (no HDF5 signature)\n")
    missing = sfi("preview", str(tmp_path / "nope.nxs"))
    assert missing.returncode == 1 and missing.stderr == f"sfi: preview: {tmp_path / 'nope.nxs'}: not found\n"


def test_dry_run_preview_dir_and_no_preview(sfi, tmp_path: Path) -> None:
    path = write_ess(tmp_path / "run.nxs", events=2000)
    config = tmp_path / "sfi.toml"
    config.write_text("[defaults]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in DEFAULTS.items()))
    run = sfi("-c", str(config), "ingest-file", str(path), "--dry-run", "--preview-dir", str(tmp_path / "pv"), "--json")
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)
    assert record["preview"] == "written" and record["status"] == "dry-run"
    [png] = (tmp_path / "pv").iterdir()
    assert png.name.endswith(".png") and png_size(png.read_bytes()) == (400, 300)
    off = sfi("-c", str(config), "ingest-file", str(path), "--dry-run", "--no-preview", "--json")
    assert json.loads(off.stdout)["preview"] is None
    (tmp_path / "blocked").write_text("a file where the folder should be")
    broken = sfi("-c", str(config), "ingest-file", str(path), "--dry-run", "--preview-dir", str(tmp_path / "blocked"),
                 "--json")
    assert broken.returncode == 0 and json.loads(broken.stdout)["preview"] == "failed"  # the dataset is not failed
    assert "no preview (the dataset is stored)" in broken.stderr and "Traceback" not in broken.stderr


def test_catalogue_keeps_the_preview_and_push_sends_it_once(tmp_path: Path) -> None:
    cfg = load_config(None, env={}, overrides={"defaults": DEFAULTS})
    catalogue = CatalogueDir(tmp_path / "cat")
    files = [write_ess(tmp_path / "e.nxs", events=500), write_isis(tmp_path / "i.nxs", events=0)]
    results = [Ingestor(cfg, catalogue).ingest(str(f)) for f in files]
    assert [(r.status, r.preview) for r in results] == [("created", "created"), ("created", "none")]
    [entry, _] = sorted(catalogue.entries(), key=lambda e: e.preview is None)
    assert entry.preview is not None and png_size(entry.preview.png) == (400, 300)
    with ScicatTestServer({"admin": "pw"}, admins={"admin"}) as server:
        client = ScicatClient(server.url, username="admin", password="pw", lock_dir=tmp_path / "locks")
        try:
            for _ in range(2):
                assert {r.status for r in push_catalogue(catalogue, client)} <= {"created", "exists"}
        finally:
            client.close()
        [attachment] = server.attachments.values()
        assert attachment["datasetId"] == entry.pid and attachment["thumbnail"] == entry.preview.data_uri


_KILLED_CHILD = """
import sys
from scicat_fw_ingest.preview import make_preview
from scicat_fw_ingest.scicat import ScicatClient
url, token, locks, path, pid = sys.argv[1:]
client = ScicatClient(url, token=token, lock_dir=locks, grace=3.0, timeout=30)
client.attach_preview({"pid": pid, "ownerGroup": "ess"}, lambda: make_preview(path))
"""


def test_a_process_killed_during_the_post_leaves_a_note_the_next_one_waits_for(tmp_path: Path) -> None:
    """The server is still storing the first POST when its sender dies: the next attach waits out the grace
    period from the note, then finds it, draws nothing and sends nothing (without the note: two pictures)."""
    import time

    path = write_ess(tmp_path / "ev.nxs", events=1000)
    with ScicatTestServer() as server:  # its token's account reads every dataset
        pid = "sfi-test/killed-during-post"
        server.store_dataset({"pid": pid, "ownerGroup": "ess", "sourceFolder": "/d"}, "admin", version="v3")
        server.slow(1.5)  # every request: 1.5 s before it takes effect
        child = subprocess.Popen([sys.executable, "-c", _KILLED_CHILD, server.url, server.token,
                                  str(tmp_path / "locks"), str(path), pid])
        try:
            deadline = time.monotonic() + 30
            while not any(r.method == "POST" and "attachments" in r.path for r in list(server.requests)):
                assert time.monotonic() < deadline and child.poll() is None, "the child never sent its POST"
                time.sleep(0.02)
        finally:
            child.kill()
            child.wait()
        server.slow(0)
        assert server.attachments == {}  # still being stored
        calls: list[int] = []
        client = ScicatClient(server.url, token=server.token, lock_dir=tmp_path / "locks", grace=3.0)
        try:
            assert client.attach_preview({"pid": pid, "ownerGroup": "ess"}, lambda: calls.append(1)) == "exists"
        finally:
            client.close()
        assert calls == [] and len(server.attachments) == 1


def test_external_links_are_not_followed_and_dangling_links_are_skipped(tmp_path: Path) -> None:
    """An external link may point outside the data roots: the preview never opens it."""
    with h5py.File(tmp_path / "other.h5", "w") as fh:
        ev = fh.create_group("ev")
        ev.attrs["NX_class"] = "NXevent_data"
        ev["event_id"] = np.arange(10, dtype="u4")
    with h5py.File(tmp_path / "main.nxs", "w") as fh:
        entry = fh.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        entry["ext"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/ev")
        entry["dangling"] = h5py.SoftLink("/nowhere")
    found = find_plot(tmp_path / "main.nxs")
    assert isinstance(found, NoPreview) and "no NXevent_data group" in found.reason
