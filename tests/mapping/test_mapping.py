"""Profiles, sources, the pid rule, defaults and the datablock: the mapping core without a server."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from streaming_data_types import serialise_pl72, serialise_wrdn

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.ingest import Ingestor, RunInfo
from scicat_fw_ingest.ingest.datablock import digest_files, file_digest, make_datablock
from scicat_fw_ingest.mapping import ProfileError, ProfileSet, to_iso
from scicat_fw_ingest.messages import decode
from scicat_fw_ingest.testing.dry_run import dry, make_cfg, origins, write_profile
from scicat_fw_ingest.testing.nexus_files import write_ess, write_isis, write_other


# -- times ----------------------------------------------------------------------------------------
def test_naive_isis_times_are_uk_local_time() -> None:
    assert to_iso("2024-07-01T09:00:00", "Europe/London") == "2024-07-01T08:00:00Z"  # BST
    assert to_iso("2024-01-01T09:00:00", "Europe/London") == "2024-01-01T09:00:00Z"  # GMT
    assert to_iso("2024-10-28T09:06:41.186Z") == "2024-10-28T09:06:41.186Z"
    assert to_iso(1_700_000_000_000) == "2023-11-14T22:13:20Z"
    assert to_iso("yesterday") is None and to_iso(0) is None and to_iso(True) is None


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=4_102_444_800_000))
def test_ms_times_round_trip(ms: int) -> None:
    import datetime as dt

    text = to_iso(ms)
    assert text is not None and text.endswith("Z")
    back = dt.datetime.fromisoformat(text)
    assert round(back.timestamp() * 1000) == ms


# -- the built-in profiles ------------------------------------------------------------------------
def test_ess_fixture_maps_every_field(tmp_path: Path) -> None:
    path = write_ess(tmp_path / "run.nxs", instrument="LOKI", proposal="654321")
    ds = dry(make_cfg(), path)
    assert ds["pid"] == "5f0e7a1e-0000-4000-8000-000000000001"
    assert ds["type"] == "raw" and ds["sourceFolder"] == str(tmp_path)
    assert ds["proposalId"] == "654321" and ds["ownerGroup"] == "654321"
    assert ds["contactEmail"] == "ada@example.org" and ds["principalInvestigator"] == "Ada Lovelace"
    assert ds["creationLocation"] == "ESS:LOKI" and ds["keywords"] == ["LOKI"]
    assert ds["startTime"] == "2024-05-01T10:00:00Z" and ds["creationTime"] == "2024-05-01T11:30:00Z"
    assert ds["scientificMetadata"]["sample_temperature"] == {"value": 295.5, "unit": "K"}
    assert "size" not in ds and "numberOfFiles" not in ds


def test_isis_fixture_maps_every_field(tmp_path: Path) -> None:
    path = write_isis(tmp_path / "LOQ00049886.nxs", run_number=49886, experiment_identifier="1820123")
    ds = dry(make_cfg(), path)
    assert ds["runNumber"] == "49886" and isinstance(ds["runNumber"], str)
    assert ds["proposalId"] == "1820123" and ds["datasetName"] == "LOQ sample run"
    assert ds["startTime"] == "2024-07-01T08:00:00Z" and ds["endTime"] == "2024-07-01T09:30:00Z"
    assert ds["principalInvestigator"] == "Grace Hopper" and ds["creationLocation"] == "ISIS:LOQ"
    sm = ds["scientificMetadata"]
    assert sm["duration"] == {"value": 5400.0, "unit": "second"}
    assert sm["good_frames"]["value"] == 17000 and isinstance(sm["total_counts"]["value"], int)
    assert ds["pid"] == str(uuid.uuid5(uuid.NAMESPACE_URL, str(path)))  # no uuid in the file, no job id


def test_real_ess_file_is_sensible(shared_data: Path) -> None:
    ds = dry(make_cfg(), shared_data / "ess_coda_small.hdf")
    assert ds["pid"] == "f22acb1c-950b-11ef-a3ef-fa163e9aae0a" and ds["proposalId"] == "443503"
    assert ds["datasetName"] == "odin" and ds["creationLocation"] == "ESS:ODIN"
    assert ds["startTime"] == "2024-10-28T09:06:41.186Z" and ds["endTime"] == "2024-10-28T09:18:14.376Z"
    assert ds["contactEmail"] == "data@facility.example"  # every user email in the file is empty


def test_real_isis_file_is_sensible(shared_data: Path) -> None:
    ds = dry(make_cfg(), shared_data / "isis_loq_minimal_histogram.nxs")
    assert ds["datasetName"] == "LOQ49886" and ds["runNumber"] == "49886"
    assert ds["creationTime"] == "2009-04-28T10:47:44Z" and ds["creationLocation"] == "ISIS:LOQ"
    assert ds["scientificMetadata"]["duration"] == {"value": 5233.0, "unit": "second"}


# -- pid rule ------------------------------------------------------------------------------------
def test_pid_prefix_uuid_then_job_id_then_path(tmp_path: Path) -> None:
    cfg = make_cfg(pid_prefix="20.500.12269/")
    with_uuid = write_ess(tmp_path / "a.nxs")
    assert dry(cfg, with_uuid, RunInfo(job_id="job-1"))["pid"] == "20.500.12269/5f0e7a1e-0000-4000-8000-000000000001"
    no_uuid = write_ess(tmp_path / "b.nxs", uuid=None)
    assert dry(cfg, no_uuid, RunInfo(job_id="job-1"))["pid"] == "20.500.12269/job-1"
    first, second = dry(cfg, no_uuid)["pid"], dry(cfg, no_uuid)["pid"]
    assert first == second == "20.500.12269/" + str(uuid.uuid5(uuid.NAMESPACE_URL, str(no_uuid)))


def _with_uuid_value(path: Path, value: object) -> Path:
    import h5py
    import numpy as np

    with h5py.File(path, "a") as fh:
        del fh["entry/entry_identifier_uuid"]
        if value is not None:
            as_strings = isinstance(value, list) and isinstance(value[0], str)
            fh["entry/entry_identifier_uuid"] = np.asarray(value, dtype=h5py.string_dtype()) if as_strings else value
    return path


@pytest.mark.parametrize("bad, why", [
    ([1, 2, 3], "an array of 3 values"), (3.25, "a float"), ("", "empty"), ("not-a-uuid", "is not a UUID"),
    ("5f0e7a1e 0000", "spaces"), (["a", "b"], "an array of 2 values"),
])
def test_malformed_pid_source_falls_back_with_a_warning_never_to_a_fragment(tmp_path: Path, bad: object,
                                                                           why: str) -> None:
    cfg = make_cfg()
    path = _with_uuid_value(write_ess(tmp_path / "a.nxs"), bad)
    result = Ingestor(cfg, None).ingest(str(path), RunInfo(job_id="job-7"))
    assert result.status == "dry-run" and result.dataset is not None, result.error
    assert result.dataset["pid"] == "job-7"
    rows = {f: (v, o) for f, v, o in Ingestor(cfg, None).explain(str(path), RunInfo(job_id="job-7"))}
    warning = rows["(warning)"][0]
    assert "entry_identifier_uuid" in str(warning) and why in str(warning) and "next pid source" in str(warning)
    without_job = Ingestor(cfg, None).ingest(str(path))
    assert without_job.dataset is not None
    assert without_job.dataset["pid"] == str(uuid.uuid5(uuid.NAMESPACE_URL, str(path)))  # never "1"


def test_well_formed_pid_forms_are_kept_whole(tmp_path: Path) -> None:
    cfg = make_cfg()
    one = _with_uuid_value(write_ess(tmp_path / "a.nxs"), ["5f0e7a1e-0000-4000-8000-00000000000a"])
    assert dry(cfg, one)["pid"] == "5f0e7a1e-0000-4000-8000-00000000000a"  # a one-element string array
    assert dry(cfg, write_ess(tmp_path / "b.nxs", uuid=None), RunInfo(job_id=" "))["pid"] == \
        str(uuid.uuid5(uuid.NAMESPACE_URL, str(tmp_path / "b.nxs")))  # a blank job id is no pid either


def test_empty_entry_is_refused_unless_the_profile_says_so(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "empty.nxs"
    with h5py.File(path, "w") as fh:
        fh.create_group("entry").attrs["NX_class"] = "NXentry"
    run = RunInfo(job_id="job-9", run_name="r9", instrument_name="DREAM")
    result = Ingestor(make_cfg(), None).ingest(str(path), run)
    assert result.status == "failed" and not result.retryable
    assert "holds nothing profile" in (result.error or "") and "ingest_empty = true" in (result.error or "")
    profiles = tmp_path / "profiles"
    write_profile(profiles, "bare", '[profile]\nextends = "nexus"\npriority = 10\ningest_empty = true\n')
    cfg = make_cfg(profile_dirs=[str(profiles)])
    dataset = dry(cfg, path, RunInfo(job_id="job-9", run_name="r9", instrument_name="DREAM"))
    assert dataset["pid"] == "job-9" and dataset["datasetName"] == "r9"
    write_profile(tmp_path / "broken", "bad", '[profile]\nextends = "nexus"\ningest_empty = "yes"\n')
    with pytest.raises(ProfileError, match="ingest_empty: true or false"):
        ProfileSet([str(tmp_path / "broken")]).get("bad")


def test_path_map_maps_writer_prefix_to_local(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    local = write_ess(tmp_path / "sub" / "a.nxs")
    cfg = make_cfg(path_map=[["/writer/data", str(tmp_path)], ["/writer", "/elsewhere"]])
    result = Ingestor(cfg, None).ingest("/writer/data/sub/a.nxs")
    assert result.status == "dry-run" and result.dataset is not None and result.origdatablock is not None
    assert result.dataset["sourceFolder"] == str(local.parent)
    assert result.file == "/writer/data/sub/a.nxs"
    assert result.origdatablock["dataFileList"][0]["path"] == "a.nxs"


# -- run information ------------------------------------------------------------------------------
def test_run_info_from_real_messages_and_bad_metadata() -> None:
    pl72 = decode(serialise_pl72("job-7", "raw/run7.nxs", start_time=1_700_000_000_000, run_name="run7",
                                 instrument_name="LOKI", metadata='{"contact_email": "pi@x.org"}')).value
    wrdn = decode(serialise_wrdn("svc", "job-7", False, "/writer/raw/run7.nxs", metadata="not json")).value
    info = RunInfo.from_messages(pl72, wrdn)
    assert info.job_id == "job-7" and info.filename == "/writer/raw/run7.nxs"
    assert info.metadata == {"contact_email": "pi@x.org"} and info.wrdn_metadata == {}
    assert info.start_time_ms == 1_700_000_000_000 and info.stop_time_ms is None and info.writer_error is None
    failed = RunInfo.from_messages(None, decode(serialise_wrdn("s", "j", True, "/f.nxs", message="disk full")).value)
    assert failed.writer_error == "disk full" and failed.metadata == {}
    assert RunInfo.from_messages(None, None) == RunInfo()


def test_run_metadata_fills_gaps_and_is_included(tmp_path: Path) -> None:
    path = write_ess(tmp_path / "a.nxs", users=[], end=None, proposal=None)
    run = RunInfo(job_id="j", stop_time_ms=1_714_561_200_000,
                  metadata={"contact_email": "pi@example.org", "principal_investigator": "Pat PI", "beam": 5})
    ds = dry(make_cfg(), path, run)
    assert ds["contactEmail"] == "pi@example.org" and ds["principalInvestigator"] == "Pat PI"
    assert ds["creationTime"] == "2024-05-01T11:00:00Z"  # from the run stop time: the file has no end_time
    assert ds["scientificMetadata"]["beam"] == {"value": 5, "unit": ""}
    assert ds["scientificMetadata"]["job_id"]["value"] == "j"
    got = origins(make_cfg(), path, run)
    assert got["contactEmail"] == ("pi@example.org", "metadata:contact_email")
    assert got["creationTime"][1] == "run:stop_time"


# -- defaults and required fields -----------------------------------------------------------------
def test_missing_required_field_names_field_and_config_key(tmp_path: Path) -> None:
    path = write_isis(tmp_path / "r.nxs", user=None)
    cfg = load_config(None, env={}, overrides={})
    result = Ingestor(cfg, None).ingest(str(path))
    assert result.status == "failed" and not result.retryable
    error = result.error or ""
    assert "contactEmail" in error and "[defaults]" in error and str(path) in error
    got = origins(cfg, path)
    assert got["contactEmail"] == (None, "MISSING: set [defaults] contactEmail in the config")


def test_defaults_fill_and_unknown_default_key_fails(tmp_path: Path) -> None:
    cfg = make_cfg()
    cfg.defaults["accessGroups"] = ["loki", "ess"]
    assert dry(cfg, write_isis(tmp_path / "r.nxs"))["accessGroups"] == ["loki", "ess"]
    cfg.defaults["contactemail"] = "typo@x.org"
    with pytest.raises(ProfileError, match=r"\[defaults\] contactemail"):
        Ingestor(cfg, None)


# -- profile files --------------------------------------------------------------------------------
def test_user_profile_selected_by_instrument_extends_builtin(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    write_profile(profiles, "loki", '[profile]\nextends = "ess"\ninstruments = ["loki"]\n'
                  '[fields]\ndatasetName = { from = "nexus:/entry/title", format = "LoKI: {value}" }\n')
    cfg = make_cfg(profile_dirs=[str(profiles)])
    assert dry(cfg, write_ess(tmp_path / "a.nxs", instrument="LOKI"))["datasetName"] == "LoKI: test run"
    other = dry(cfg, write_ess(tmp_path / "b.nxs", instrument="DREAM"))
    assert other["datasetName"] == "test run" and other["creationLocation"] == "ESS:DREAM"


def test_profile_selected_by_path_pattern_and_by_name(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    write_profile(profiles, "calib", '[profile]\nextends = "ess"\npaths = ["*/calib/*"]\n'
                  '[fields]\nkeywords = { from = ["value:calibration"], type = "list" }\n')
    cfg = make_cfg(profile_dirs=[str(profiles)])
    (tmp_path / "calib").mkdir()
    assert dry(cfg, write_ess(tmp_path / "calib" / "c.nxs"))["keywords"] == ["calibration"]
    assert dry(cfg, write_ess(tmp_path / "d.nxs"))["keywords"] == ["LOKI"]
    assert dry(cfg, write_ess(tmp_path / "e.nxs"), profile="calib")["keywords"] == ["calibration"]


@pytest.mark.parametrize("text, message", [
    ('[fields]\nfoo = "nexus:/entry/title"\n', "[fields] foo: not a SciCat raw dataset field"),
    ('[fields]\nsize = "file:size"\n', "[fields] size: set by sfi itself"),
    ('[fields]\ndatasetName = "hdf:/entry/title"\n', "unknown source kind 'hdf'"),
    ('[fields]\ndatasetName = "nexus:entry/title"\n', "NeXus paths are absolute"),
    ('[fields]\ndatasetName = "file:owner"\n', "unknown file fact 'owner'"),
    ('[fields]\nkeywords = { from = "file:name", type = "int" }\n', "SciCat needs type 'list'"),
    ('[profile]\ntimezone = "Mars/Olympus"\n', "timezone 'Mars/Olympus'"),
    ('[profile]\nextends = "nothere"\n', "extends unknown profile 'nothere'"),
    ('[profile]\nbogus = 1\n', "[profile] unknown key(s) bogus"),
    ('[fields\n', "not valid TOML"),
])
def test_broken_profiles_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = write_profile(tmp_path / "p", "broken", text)
    with pytest.raises(ProfileError) as info:
        ProfileSet([str(tmp_path / "p")])
    assert message in str(info.value) and str(path) in str(info.value)


def test_extends_loop_and_unknown_profile_name(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    write_profile(folder, "a", '[profile]\nextends = "b"\n')
    write_profile(folder, "b", '[profile]\nextends = "a"\n')
    with pytest.raises(ProfileError, match="loop"):
        ProfileSet([str(folder)])
    with pytest.raises(ProfileError, match="unknown"):
        ProfileSet([]).get("nope")


def test_file_without_expected_groups_fails_clearly(tmp_path: Path) -> None:
    path = write_other(tmp_path / "plain.h5")
    result = Ingestor(make_cfg(), None).ingest(str(path))
    assert result.status == "failed" and not result.retryable
    assert "no mapping profile fits" in (result.error or "") and "/entry" in (result.error or "")
    forced = Ingestor(make_cfg(), None, profile="isis").ingest(str(path))
    assert "needs a root NXentry group named raw_data_*" in (forced.error or "")


# -- datablock --------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["sha256", "blake2b", "md5"])
def test_streamed_digest_equals_hashlib(tmp_path: Path, algorithm: str) -> None:
    path = tmp_path / "blob"
    data = bytes(range(256)) * 4099
    path.write_bytes(data)
    assert file_digest(str(path), algorithm, chunk=1000) == hashlib.new(algorithm, data).hexdigest()


def test_datablock_shape_follows_the_server(tmp_path: Path) -> None:
    path = write_ess(tmp_path / "a.nxs")
    block = make_datablock([str(path)], str(tmp_path), "sha256")
    entry = block["dataFileList"][0]
    assert block["chkAlg"] == "sha256" and block["size"] == entry["size"] == path.stat().st_size
    assert entry["chk"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert entry["path"] == "a.nxs" and entry["time"].endswith("Z") and isinstance(entry["perm"], str)
    assert all(isinstance(entry[k], str) for k in ("uid", "gid", "perm", "chk", "time"))
    none = make_datablock([str(path)], str(tmp_path), "none")
    assert "chkAlg" not in none and "chk" not in none["dataFileList"][0]
    json.dumps(block)


def test_digest_files_in_parallel(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        path = tmp_path / f"f{i}"
        path.write_bytes(bytes([i]) * (100_000 + i))
        paths.append(str(path))
    got = digest_files(paths, "sha256", workers=3)
    assert got == {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}
