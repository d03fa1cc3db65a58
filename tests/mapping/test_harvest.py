"""What scientists find in SciCat: the generic harvest, time zones, honest profile selection (issue 19 items 1-3, 5).

Files are written in the real layouts of several facilities (``scicat_fw_ingest.testing.nexus_layouts``).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from scicat_fw_ingest.config_check import problems
from scicat_fw_ingest.ingest import Ingestor, RunInfo
from scicat_fw_ingest.mapping import ProfileError
from scicat_fw_ingest.nexus.reader import open_snapshot, summarize_dataset
from scicat_fw_ingest.scicat import ScicatClient
from scicat_fw_ingest.testing import nexus_layouts as layouts
from scicat_fw_ingest.testing.backend import ACCOUNTS, RealBackend
from scicat_fw_ingest.testing.dry_run import dry, make_cfg, origins, write_profile

#: Per facility: profile, creationLocation, sample name, startTime, and harvested facts {key: (value, unit)}.
EXPECTED: dict[str, tuple[str, str, str, str, dict[str, tuple[Any, str]]]] = {
    "sinq": ("nexus", "FOCUS at SINQ", "V2O5", "2007-09-03T16:16:36Z", {
        "sample_temperature": (296.4, "K"), "instrument_monochromator_lambda": (6.0, "Angstrom"),
        "instrument_monochromator_energy": (2.27, "meV"), "instrument_fermi_chopper_rotation_speed": (10500.0, "rpm"),
        "instrument_fermi_chopper_phase": (178.2, "degree"), "instrument_disk_chopper_rotation_speed": (5250.0, "rpm"),
        "instrument_counter_count_time": (4403.2, "s"), "instrument_counter_monitor": (400013, "counts"),
        "instrument_SINQ_current": (1.62, "mA"), "instrument_merged_distance": (2500.0, "mm")}),
    "ill": ("nexus", "D22", "vanadium", "2021-09-18T22:04:08Z", {
        "sample_temperature": (293.1, "K"), "instrument_selector_wavelength": (6.0, "Angstrom"),
        "instrument_detector_det_calc": (5.6, "m"), "monitor1_data_total": (1_250_000, "counts"),
        "monitor1_monrate": (693.7, "counts/s")}),
    "aps_nxsas": ("nexus", "APS 9-ID-C USAXS pinSAXS", "glassy carbon", "2015-08-26T20:17:33Z", {
        "instrument_monochromator_wavelength": (0.5904, "Angstrom"), "instrument_monochromator_energy": (21.0, "keV"),
        "instrument_detector_distance": (541.0, "mm"), "instrument_detector_beam_center_x": (122.5, "pixel"),
        "instrument_source_current": (101.9, "mA"), "sample_thickness": (1.055, "mm"), "definition": ("NXsas", "")}),
    "diamond_nxmx": ("nexus", "DIAMOND BEAMLINE I04", "thaumatin", "2021-03-11T14:02:11.123Z", {
        "instrument_beam_incident_wavelength": (0.9795, "angstrom"), "instrument_detector_distance": (0.2275, "m"),
        "instrument_detector_count_time": (0.01, "s"), "instrument_beam_incident_beam_size": ([80.0, 20.0], "micron"),
        "sample_temperature": (100.0, "K")}),
    "nxtofraw": ("nexus", "GEM", "Ni", "2012-06-14T08:33:10Z", {
        "proton_charge": (151.3, "uA.hour"), "instrument_moderator_temperature": (110.0, "K"),
        "monitor_1_integral": (74000, "counts"), "sample_temperature": (10.0, "K"), "user_1_name": ("Ron Smith", "")}),
    "diamond_gda": ("nexus", "i16", "Fe3O4 (001)", "2019-03-15T10:23:45.123Z", {
        "before_scan_delta": (40.2, "deg"), "before_scan_Ta": (12.1, "K"), "instrument_source_current": (300.1, "mA"),
        "scan_command": ("scan eta 20 22 0.01 pil 1", "")}),
    "ess": ("ess", "ESS:LOKI", "SiO2 spheres", "2024-10-28T09:18:14.376Z", {
        "instrument_source_name": ("European Spallation Source", ""), "user_AdaLovelace_affiliation": ("ESS", "")}),
    "isis": ("isis", "ISIS:LOQ", "polymer", "2009-04-28T08:20:29Z", {"sample_thickness": (2.0, "mm")}),
}


@pytest.fixture(scope="module")
def facility_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("facilities")
    return {name: writer(folder / f"{name}.nxs") for name, writer in layouts.FACILITIES.items()}


@pytest.mark.parametrize("facility", sorted(EXPECTED))
def test_every_facility_gives_title_instrument_sample_times_and_its_physical_quantities(
        facility_files: dict[str, Path], facility: str) -> None:
    profile, location, sample, start, facts = EXPECTED[facility]
    path = facility_files[facility]
    ds = dry(make_cfg(), path)
    rows = origins(make_cfg(), path)
    assert rows["(profile)"][0] == profile
    assert ds["creationLocation"] == location and ds["datasetName"] and ds["startTime"] == start
    assert not (profile != "ess" and location.startswith("ESS")), "a file from elsewhere is never labelled ESS"
    sm = ds["scientificMetadata"]
    assert sm["sample_name"]["value"] == sample
    for key, (value, unit) in facts.items():
        assert key in sm, (key, sorted(sm))
        got = sm[key]["value"]
        assert (got == pytest.approx(value) if isinstance(value, (int, float, list)) else got == value), (key, got)
        assert sm[key]["unit"] == unit, key
        assert rows[f"scientificMetadata.{key}"][1].startswith("harvest: ")   # --explain names the NeXus path
    for key, entry in sm.items():
        assert key and not key.startswith("$") and "." not in key, key  # keys SciCat stores and finds
        assert set(entry) >= {"value", "unit"}


def test_nxlog_is_summarised_in_slices_with_its_unit(tmp_path: Path) -> None:
    path = layouts.write_ess(tmp_path / "ess.nxs", log_points=5000)
    sm = dry(make_cfg(), path)["scientificMetadata"]
    temperature = sm["sample_temperature"]
    expected = 290.0 + np.linspace(0, 2, 5000)
    assert temperature["unit"] == "K" and temperature["count"] == 5000
    assert temperature["first"] == pytest.approx(290.0) and temperature["last"] == pytest.approx(292.0)
    assert temperature["min"] == pytest.approx(290.0) and temperature["max"] == pytest.approx(292.0)
    assert temperature["mean"] == pytest.approx(expected.mean()) == temperature["value"]
    assert sm["instrument_band_chopper_rotation_speed"]["value"] == pytest.approx(14.0)
    # slices smaller than the log give the same summary (NaN points are left out of min/max/mean)
    with h5py.File(tmp_path / "nan.h5", "w") as fh:
        data = np.arange(1000, dtype="f8")
        data[500] = np.nan
        fh.create_dataset("v", data=data, chunks=(64,))
    with h5py.File(tmp_path / "nan.h5") as fh:
        summary = summarize_dataset(fh["v"], chunk=100)
    assert summary is not None and summary.count == 1000 and summary.first == 0 and summary.last == 999
    assert summary.maximum == 999 and summary.mean == pytest.approx((data[~np.isnan(data)]).mean())


def test_huge_arrays_are_never_copied_and_monitors_give_totals(facility_files: dict[str, Path]) -> None:
    sm = dry(make_cfg(), facility_files["sinq"])["scientificMetadata"]
    assert not any("counts" in k for k in sm)               # the 375x1024 detector array
    with open_snapshot(str(facility_files["sinq"])) as snap:
        node = snap.get("/entry1/FOCUS/merged/counts")
        assert node is not None and node.value is None and node.size == 375 * 1024


def test_naive_times_without_a_zone_are_assumed_utc_and_said_so(facility_files: dict[str, Path],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sfi.mapping"):
        ds = dry(make_cfg(), facility_files["sinq"])
    assert ds["startTime"] == "2007-09-03T16:16:36Z"
    assert ds["scientificMetadata"]["sfi_assumed_timezone"] == {"value": "UTC", "unit": ""}
    zone_lines = [r for r in caplog.records if "taken as UTC" in r.getMessage()]
    assert len(zone_lines) == 1 and "startTime" in zone_lines[0].getMessage()  # one warning per file
    rows = origins(make_cfg(), facility_files["sinq"])
    assert "taken as UTC" in str(rows["(warning)"][0])
    # times with an offset or Z need no zone: no note
    for name in ("aps_nxsas", "diamond_nxmx", "nxtofraw", "ess"):
        assert "sfi_assumed_timezone" not in dry(make_cfg(), facility_files[name])["scientificMetadata"]


def test_ingest_timezone_and_profile_timezone_convert_local_times(facility_files: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    cfg = make_cfg(timezone="Europe/Zurich")
    ds = dry(cfg, facility_files["sinq"])
    assert (ds["startTime"], ds["endTime"]) == ("2007-09-03T14:16:36Z", "2007-09-03T15:30:01Z")  # CEST, +02:00
    assert "sfi_assumed_timezone" not in ds["scientificMetadata"]
    assert origins(cfg, facility_files["sinq"])["(timezone)"] == ("Europe/Zurich", origins(
        cfg, facility_files["sinq"])["(timezone)"][1])
    assert "[ingest] timezone" in origins(cfg, facility_files["sinq"])["(timezone)"][1]
    folder = write_profile(tmp_path / "p", "ill", '[profile]\nextends = "nexus"\nentry_names = ["entry0"]\n'
                                                  'timezone = "Europe/Paris"\n')
    cfg = make_cfg(profile_dirs=[str(folder.parent)], timezone="Asia/Tokyo")   # the profile's zone wins
    ds = dry(cfg, facility_files["ill"])
    assert ds["startTime"] == "2021-09-18T20:04:08Z"
    with pytest.raises(ProfileError, match="timezone: 'Mars/Olympus' is not a known time zone"):
        Ingestor(make_cfg(timezone="Mars/Olympus"), None)
    assert any("[ingest] timezone: 'Mars/Olympus'" in line for line in problems(make_cfg(timezone="Mars/Olympus")))


def test_ess_only_for_files_kafka_to_nexus_wrote(tmp_path: Path, facility_files: dict[str, Path]) -> None:
    # /entry alone is no evidence: APS, Diamond and NXDL examples use it
    for name in ("aps_nxsas", "diamond_nxmx", "nxtofraw"):
        reason = origins(make_cfg(), facility_files[name])["(profile)"]
        assert reason[0] == "nexus" and "did not fit: isis, ess" in reason[1]
    by_uuid = origins(make_cfg(), facility_files["ess"])["(profile)"]
    assert by_uuid[0] == "ess" and "/entry/entry_identifier_uuid present" in by_uuid[1]
    plain = layouts.write_nxsas(tmp_path / "k2n.nxs")
    with h5py.File(plain, "a") as fh:
        fh.attrs["creator"] = "kafka-to-nexus commit 1a2b3c4"
    by_creator = origins(make_cfg(), plain)["(profile)"]
    assert by_creator[0] == "ess" and "/@creator matches 'kafka-to-nexus*'" in by_creator[1]
    other = layouts.write_nxsas(tmp_path / "run.nxs")
    by_run = origins(make_cfg(), other, RunInfo(job_id="job-7"))["(profile)"]
    assert by_run[0] == "ess" and "run:job_id" in by_run[1]
    assert dry(make_cfg(), other)["creationLocation"] == "APS 9-ID-C USAXS pinSAXS"
    isis_by_k2n = layouts.write_isis(tmp_path / "isis.nxs")
    with h5py.File(isis_by_k2n, "a") as fh:
        fh.attrs["creator"] = "kafka-to-nexus commit 1a2b3c4"
    assert origins(make_cfg(), isis_by_k2n, RunInfo(job_id="j"))["(profile)"][0] == "isis"


def test_caps_keep_order_include_exclude_and_emails(facility_files: dict[str, Path], tmp_path: Path) -> None:
    folder = write_profile(tmp_path / "p", "capped", '[profile]\nextends = "nexus"\nname = "capped"\n'
                                                     'harvest_max_keys = 3\n')
    cfg = make_cfg(profile_dirs=[str(folder.parent)])
    result = Ingestor(cfg, None, profile="capped").ingest(str(facility_files["sinq"]))
    assert result.dataset is not None
    sm = result.dataset["scientificMetadata"]
    harvested = [k for k in sm if origins_of(cfg, facility_files["sinq"], "capped").get(k, "").startswith("harvest")]
    assert len(harvested) == 3 and harvested == ["run_number", "sample_environment", "sample_sample_mass"]
    rows = {f: o for f, _, o in Ingestor(cfg, None, profile="capped").explain(str(facility_files["sinq"]))}
    assert any("left out by the caps" in str(v) for f, v, _ in
               Ingestor(cfg, None, profile="capped").explain(str(facility_files["sinq"])) if f == "(warning)")
    assert rows
    folder = write_profile(tmp_path / "q", "picky", '[profile]\nextends = "nexus"\nname = "picky"\n'
                                                    'harvest_include = ["instrument_*", "user_*"]\n'
                                                    'harvest_exclude = ["*_phase"]\nharvest_emails = true\n')
    sm = dry(make_cfg(profile_dirs=[str(folder.parent)]), facility_files["sinq"], profile="picky")["scientificMetadata"]
    assert "instrument_fermi_chopper_rotation_speed" in sm and "instrument_fermi_chopper_phase" not in sm
    assert "sample_temperature" not in sm and sm["user_email"]["value"] == "lukas.keller@psi.example"
    assert "user_email" not in dry(make_cfg(), facility_files["sinq"])["scientificMetadata"]   # only if configured
    bad = write_profile(tmp_path / "r", "bad", '[profile]\nextends = "nexus"\nharvest_max_keys = -1\n')
    with pytest.raises(ProfileError, match="harvest_max_keys"):
        Ingestor(make_cfg(profile_dirs=[str(bad.parent)]), None)


def origins_of(cfg: object, path: Path, profile: str) -> dict[str, str]:
    rows = Ingestor(cfg, None, profile=profile).explain(str(path))  # type: ignore[arg-type]
    return {f.removeprefix("scientificMetadata."): o for f, _, o in rows}


def _odd_names(path: Path) -> Path:
    """An NXsample with group and dataset names SciCat keys must not carry as they are ($, ., spaces)."""
    layouts.write_nxsas(path)
    with h5py.File(path, "a") as fh:
        env = fh["entry/sample"].create_group("$env.cryo 1")
        env.attrs["NX_class"] = "NXenvironment"
        env.create_dataset("set.point", data=4.2).attrs["units"] = "K"
        env.create_dataset("$$", data=1.0)
    return path


def test_keys_are_cleaned_for_scicat(tmp_path: Path) -> None:
    sm = dry(make_cfg(), _odd_names(tmp_path / "odd.nxs"))["scientificMetadata"]
    assert sm["sample_env_cryo_1_set_point"] == {"value": 4.2, "unit": "K"}
    assert sm["sample_env_cryo_1_unnamed"]["value"] == 1.0


def test_join_is_honoured_without_a_type(tmp_path: Path, facility_files: dict[str, Path]) -> None:
    folder = write_profile(tmp_path / "p", "joined", '[profile]\nextends = "ess"\nname = "joined"\n'
                                                     '[scientific]\nteam = { from = "nexus:{entry}/user_*/name", '
                                                     'join = ", ", type_name = "string" }\n')
    path = layouts.write_ess(tmp_path / "two.nxs")
    with h5py.File(path, "a") as fh:
        user = fh["entry"].create_group("user_Bob")
        user.attrs["NX_class"] = "NXuser"
        user.create_dataset("name", data="Bob Builder")
    sm = dry(make_cfg(profile_dirs=[str(folder.parent)]), path, profile="joined")["scientificMetadata"]
    assert sm["team"] == {"value": "Ada Lovelace, Bob Builder", "unit": "", "type": "string"}


def test_every_facility_dataset_is_accepted_by_the_real_backend(real_scicat: RealBackend, tmp_path: Path,
                                                               facility_files: dict[str, Path]) -> None:
    client = ScicatClient(real_scicat.url, username="ingestor", password=ACCOUNTS["ingestor"], timeout=20,
                          max_attempts=2, backoff=0.01)
    cfg = make_cfg(pid_prefix=f"h3-{uuid.uuid4().hex[:8]}/")
    ingestor = Ingestor(cfg, client, checksum="none")
    for name, path in [*facility_files.items(), ("odd", _odd_names(tmp_path / "odd.nxs"))]:
        result = ingestor.ingest(str(path))
        assert result.status == "created", (name, result.error)
        assert result.dataset is not None
        status, stored = real_scicat.request("GET", "/api/v3/Datasets/" + result.dataset["pid"].replace("/", "%2F"))
        assert status == 200, (name, stored)
        sent = result.dataset["scientificMetadata"]
        assert set(stored["scientificMetadata"]) == set(sent), name
        for key, (_, unit) in EXPECTED.get(name, ("", "", "", "", {}))[4].items():
            assert stored["scientificMetadata"][key]["unit"] == unit, (name, key)
        if name == "ess":  # a nested NXlog summary is stored as sent, with the server's SI value
            temperature = stored["scientificMetadata"]["sample_temperature"]
            assert temperature["count"] == 100 and temperature["unitSI"] == "K"
