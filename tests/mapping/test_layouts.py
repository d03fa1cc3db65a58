"""Any NeXus layout, times as real files write them, and values present but unusable (issue 12 items 1, 2, 6)."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from pathlib import Path

import h5py
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scicat_fw_ingest.ingest import Ingestor
from scicat_fw_ingest.mapping import ProfileError, ProfileSet, to_iso
from scicat_fw_ingest.mapping._times import TimeParseError, parse_time
from scicat_fw_ingest.nexus.reader import open_snapshot, read_snapshot
from scicat_fw_ingest.testing.backend import ACCOUNTS, RealBackend
from scicat_fw_ingest.testing.dry_run import dry, make_cfg, origins, write_profile
from scicat_fw_ingest.testing.nexus_files import finished, write_ess, write_ill, write_isis, write_supermusr, write_v20


@pytest.mark.parametrize(("text", "zone", "unit", "iso"), [
    ("2024-10-28T09:18:14.376Z", "UTC", None, "2024-10-28T09:18:14.376Z"),
    ("2024-11-27 21:49:41.125433859 UTC", "UTC", None, "2024-11-27T21:49:41.125Z"),
    ("2024-11-27T21:49:41.125433859+01:00", "UTC", None, "2024-11-27T20:49:41.125Z"),
    ("2024-11-27 21:49:41 +0100", "UTC", None, "2024-11-27T20:49:41Z"),
    ("2009-04-28T10:47:44+00:00", "Europe/London", None, "2009-04-28T10:47:44Z"),
    ("2024-07-01T09:00:00", "Europe/London", None, "2024-07-01T08:00:00Z"),
    ("2024-07-01 09:00", "UTC", None, "2024-07-01T09:00:00Z"),
    ("18-Sep-21 22:04:08", "UTC", None, "2021-09-18T22:04:08Z"),
    ("18-Sep-21 22:04:08", "Europe/Paris", None, "2021-09-18T20:04:08Z"),
    ("18-SEP-2021 22:04", "UTC", None, "2021-09-18T22:04:00Z"),
    ("28 April 2009 10:47:44", "UTC", None, "2009-04-28T10:47:44Z"),
    ("Tue Sep 21 22:04:08 2021", "UTC", None, "2021-09-21T22:04:08Z"),
    (1_732_743_781_125_433_859, "UTC", "ns", "2024-11-27T21:43:01.125Z"),
    (1_732_743_781.5, "UTC", "s", "2024-11-27T21:43:01.500Z"),
    (1_732_743_781_125, "UTC", None, "2024-11-27T21:43:01.125Z"),
    ("1732743781", "UTC", "second", "2024-11-27T21:43:01Z"),
])
def test_time_forms_of_real_files(text: object, zone: str, unit: str | None, iso: str) -> None:
    assert to_iso(text, zone, unit) == iso


@pytest.mark.parametrize("text", ["yesterday", "2024-13-45T00:00:00", "31-Foo-21 10:00:00", "12:00"])
def test_unparseable_times_raise_with_the_value(text: str) -> None:
    with pytest.raises(TimeParseError, match="not a time"):
        parse_time(text)
    assert to_iso(text) is None


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2068, 12, 31)))
def test_every_written_form_reads_back(moment: dt.datetime) -> None:
    utc = moment.replace(tzinfo=dt.UTC)
    assert parse_time(utc.isoformat()) == utc
    assert parse_time(moment.strftime("%Y-%m-%d %H:%M:%S.%f") + "123 UTC") == utc   # ns digits are cut
    assert parse_time(moment.strftime("%d-%b-%y %H:%M:%S")) == utc.replace(microsecond=0)
    assert parse_time(moment.isoformat(), "Europe/Paris") == moment.replace(
        tzinfo=zoneinfo.ZoneInfo("Europe/Paris")).astimezone(dt.UTC)
    ns = (int(utc.timestamp()) * 1_000_000 + utc.microsecond) * 1000
    assert parse_time(ns, unit="ns") == utc


def test_time_unit_that_is_no_time_unit_raises() -> None:
    with pytest.raises(TimeParseError, match="not a time unit"):
        parse_time(12, unit="K")
    assert parse_time("", "UTC") is None and parse_time(0, unit="ns") is None
    assert parse_time("2024-01-01T00:00:00Z") == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def test_v20_entry_01_gets_title_times_and_instrument(tmp_path: Path) -> None:
    path = write_v20(tmp_path / "v20.nxs")
    ds = dry(make_cfg(), path)
    assert ds["datasetName"] == "V20 chopper commissioning"
    assert (ds["startTime"], ds["endTime"]) == ("2019-10-21T12:34:56.789Z", "2019-10-21T13:05:00Z")
    assert ds["creationTime"] == "2019-10-21T13:05:00Z"
    assert ds["creationLocation"] == "V20" and ds["keywords"] == ["V20"]   # found by NX_class: group /entry-01/V20
    rows = origins(make_cfg(), path)
    assert rows["(profile)"][0] == "nexus" and rows["(entry)"][0] == "/entry-01"


def test_ill_entry0_day_month_year_times(tmp_path: Path) -> None:
    path = write_ill(tmp_path / "ill.nxs")
    ds = dry(make_cfg(), path)
    assert ds["datasetName"] == "vanadium calibration" and ds["creationLocation"] == "D22"
    assert ds["startTime"] == "2021-09-18T22:04:08Z" and ds["endTime"] == "2021-09-18T22:34:10Z"
    assert ds["proposalId"] == "9-10-1650" and ds["runNumber"] == "92345"
    assert ds["principalInvestigator"] == "Marie Curie"
    # a site profile extending the generic one gives ILL's local time zone
    folder = tmp_path / "profiles"
    write_profile(folder, "ill", '[profile]\nextends = "nexus"\nentry_names = ["entry0"]\ntimezone = "Europe/Paris"\n')
    ds = dry(make_cfg(profile_dirs=[str(folder)]), path)
    assert ds["startTime"] == "2021-09-18T20:04:08Z"


def test_supermusr_file_time_ns_utc_and_shape_counts(tmp_path: Path) -> None:
    path = finished(write_supermusr(tmp_path / "musr.nxs", events=5000, frames=50))
    ds = dry(make_cfg(), path)
    assert ds["creationLocation"] == "ISIS:SuperMuSR" and ds["datasetName"] == "SuperMuSR commissioning run"
    assert ds["startTime"] == "2024-11-27T21:39:41Z"
    assert ds["endTime"] == ds["creationTime"] == "2024-11-27T21:49:41.125Z"   # /@file_time, no end_time
    sci = ds["scientificMetadata"]
    assert sci["event_count"]["value"] == 5000 and sci["frame_count"]["value"] == 50
    source = origins(make_cfg(), path)["scientificMetadata.event_count"][1]
    assert source == "nexus:/raw_data_1/detector_1/event_id#size"


def test_isis_event_counts_come_from_shapes_not_data(tmp_path: Path) -> None:
    path = write_isis(tmp_path / "isis.nxs", events=12_345)
    ds = dry(make_cfg(), path)
    assert ds["scientificMetadata"]["event_count"]["value"] == 12_345
    assert ds["scientificMetadata"]["frame_count"]["value"] == 1000
    with open_snapshot(str(path)) as snap:
        node = snap.get("/raw_data_1/detector_1/events/event_id")
        assert node is not None and node.value is None and node.size == 12_345   # described, never read


def test_real_files_sensible(shared_data: Path) -> None:
    ess = dry(make_cfg(), shared_data / "ess_coda_small.hdf")
    assert (ess["datasetName"], ess["creationLocation"], ess["startTime"]) == ("odin", "ESS:ODIN",
                                                                                "2024-10-28T09:06:41.186Z")
    isis = dry(make_cfg(), shared_data / "isis_loq_minimal_histogram.nxs")
    assert (isis["datasetName"], isis["creationLocation"], isis["endTime"]) == ("LOQ49886", "ISIS:LOQ",
                                                                                  "2009-04-28T10:47:44Z")
    assert isis["scientificMetadata"]["spectra"]["value"] == 17792


def test_class_segments_in_both_snapshots(tmp_path: Path) -> None:
    path = write_ill(tmp_path / "ill.nxs")
    full = read_snapshot(str(path))
    assert full.glob("/{NXentry}/{NXinstrument}/name") == ["/entry0/D22/name"]
    assert full.glob("/{NXentry}/{NXuser}") == ["/entry0/user"]
    with open_snapshot(str(path)) as lazy:
        assert lazy.glob("/{NXentry}/{NXinstrument}/name") == ["/entry0/D22/name"]
        assert lazy.glob("/{NXinstrument}") == []


def test_present_but_unparseable_time_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write_ess(tmp_path / "bad.nxs", end="sometime after lunch")
    with caplog.at_level(logging.WARNING, logger="sfi.mapping"):
        ds = dry(make_cfg(), path)
    assert ds["creationTime"] == "2024-05-01T10:00:00Z"   # the next source: start_time
    assert "endTime" not in ds
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and "nexus:/entry/end_time: 'sometime after lunch' is not a time" in logged[0]
    assert "(for creationTime, endTime, scientificMetadata.end_time); skipped" in logged[0]
    warnings = [v for f, v, _ in Ingestor(make_cfg(), None).explain(str(path)) if f == "(warning)"]
    assert len(warnings) == 1 and "nexus:/entry/end_time: 'sometime after lunch'" in str(warnings[0])


def test_epoch_time_with_unit_attribute(tmp_path: Path) -> None:
    path = write_v20(tmp_path / "epoch.nxs")
    with h5py.File(path, "a") as fh:
        del fh["entry-01/start_time"]
        start = fh["entry-01"].create_dataset("start_time", data=1_571_661_296_789_000_000)
        start.attrs["units"] = "ns"
    assert dry(make_cfg(), path)["startTime"] == "2019-10-21T12:34:56.789Z"


def test_profile_entry_errors(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    write_profile(folder, "bad", '[fields]\ndatasetName = "nexus:{entry}/title"\n')
    with pytest.raises(ProfileError, match=r"uses {entry} in a path but sets no \[profile\] entry"):
        ProfileSet([str(folder)])
    write_profile(folder, "bad", '[profile]\nentry = "NXentry"\n[fields]\ndatasetName = "nexus:{entry}/title#bytes"\n')
    with pytest.raises(ProfileError, match="unknown shape fact '#bytes'"):
        ProfileSet([str(folder)])


@pytest.mark.parametrize("template", ["k2n_static_information_template.json", "k2n_writer_modules_template.json"])
def test_kafka_to_nexus_templates_written_and_ingested(shared_data: Path, tmp_path: Path, template: str) -> None:
    """The real kafka-to-nexus templates, written as the writer would, with the run start it would have had."""
    from scicat_fw_ingest.ingest import RunInfo
    from scicat_fw_ingest.nexus.writer import write_nexus

    path = tmp_path / "k2n.nxs"
    write_nexus(path, (shared_data / template).read_text(), start_time_ms=1_700_000_000_000,
                stop_time_ms=1_700_000_600_000)
    finished(path)  # closed and 0440, as the writer leaves it: complete for sfi at once
    run = RunInfo(job_id="job-1", instrument_name="YMIR", start_time_ms=1_700_000_000_000,
                  stop_time_ms=1_700_000_600_000)
    ds = dry(make_cfg(), path, run)
    assert ds["datasetName"] == "This is a title" and ds["creationLocation"] == "ESS:YMIR"
    assert (ds["startTime"], ds["endTime"]) == ("2023-11-14T22:13:20Z", "2023-11-14T22:23:20Z")


def test_entry_named_by_a_requirement_comes_first(tmp_path: Path) -> None:
    path = write_ess(tmp_path / "two.nxs", uuid=None, title="the real entry")
    with h5py.File(path, "a") as fh:
        other = fh.create_group("aaa_calibration")
        other.attrs["NX_class"] = "NXentry"
        other.create_dataset("title", data="calibration")
    ds = dry(make_cfg(), path)
    assert ds["datasetName"] == "the real entry"
    assert origins(make_cfg(), path)["(entry)"][0] == "/entry"


def test_isis_event_group_written_by_the_ev44_module_is_counted(tmp_path: Path) -> None:
    """raw_data_1/detector_1_events as kafka-to-nexus writes it from the ISIS run start (ev44)."""
    from scicat_fw_ingest.nexus.writer import write_nexus

    structure = {"children": [{"type": "group", "name": "raw_data_1",
                               "attributes": [{"name": "NX_class", "values": "NXentry"}],
                               "children": [
                                   {"module": "dataset", "config": {"name": "title", "values": "ev44 run"}},
                                   {"module": "dataset", "config": {"name": "name", "values": "ZOOM"}},
                                   {"module": "mdat", "config": {"items": ["start_time", "end_time"]}},
                                   {"type": "group", "name": "detector_1_events",
                                    "attributes": [{"name": "NX_class", "values": "NXevent_data"}],
                                    "children": [{"module": "ev44", "config": {"source": "d", "topic": "t"}}]}]}]}
    path = tmp_path / "zoom.nxs"
    write_nexus(path, structure, start_time_ms=1_700_000_000_000, stop_time_ms=1_700_000_060_000, rng_seed=3)
    finished(path)
    with h5py.File(path, "r") as h5:
        events = h5["raw_data_1/detector_1_events/event_id"].shape[0]
        frames = h5["raw_data_1/detector_1_events/event_time_zero"].shape[0]
    sci = dry(make_cfg(), path)["scientificMetadata"]
    assert (sci["event_count"]["value"], sci["frame_count"]["value"]) == (events, frames)


def test_v20_ill_and_supermusr_files_ingest_into_the_real_backend(real_scicat: RealBackend, tmp_path: Path) -> None:
    """The acceptance: title and start time stored by SciCat itself, not only built."""
    import uuid

    from scicat_fw_ingest.scicat import ScicatClient

    client = ScicatClient(real_scicat.url, username="ingestor", password=ACCOUNTS["ingestor"], timeout=10,
                          max_attempts=2, backoff=0.01)
    cfg = make_cfg(pid_prefix=f"sfi-test-{uuid.uuid4().hex[:8]}/")
    ingestor = Ingestor(cfg, client, checksum="none")
    expected = {"v20": ("V20 chopper commissioning", "2019-10-21T12:34:56.789Z"),
                "ill": ("vanadium calibration", "2021-09-18T22:04:08.000Z"),
                "musr": ("SuperMuSR commissioning run", "2024-11-27T21:39:41.000Z")}
    for name, write in (("v20", write_v20), ("ill", write_ill), ("musr", write_supermusr)):
        result = ingestor.ingest(str(finished(write(tmp_path / f"{name}.nxs"))))
        assert result.status == "created", result.error
        status, stored = real_scicat.request("GET", "/api/v3/Datasets/" + str(result.pid).replace("/", "%2F"))
        assert status == 200, stored
        assert (stored["datasetName"], stored["startTime"]) == expected[name]
