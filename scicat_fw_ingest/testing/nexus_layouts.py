"""NeXus files in the real layouts of several facilities, written with h5py, for tests and benches.

Why a builder module in the package: the harvest, time-zone and profile-selection tests and the harvest
bench need the same files, and tests and benches import the package, not each other. Each writer follows
what that facility's files hold (group names, NX_class attributes, units, how times are written):

- ``write_sinq``: PSI SINQ (FOCUS), ``/entry1``, local times ``2007-09-03 16:16:36`` with no zone;
- ``write_ill``: ILL (D22), ``/entry0``, the instrument group named after the instrument, ``18-Sep-21 22:04:08``;
- ``write_nxsas``: APS USAXS/SAXS (application definition NXsas), ``/entry``, times with ``-06:00``;
- ``write_nxmx``: Diamond MX beamline (NXmx), ``/entry``, times with ``Z``;
- ``write_nxtofraw``: a pulsed-source raw file (NXtofraw), ``/entry``, offsets ``+0100``;
- ``write_gda_scan``: a Diamond GDA scan, ``/entry1``, naive local times, positioners before the scan;
- ``write_ess``: kafka-to-nexus (``/@creator``, ``entry_identifier_uuid``, f144 NXlogs);
- ``write_isis``: ISIS raw (``raw_data_1``, selog NXlogs, naive UK times);
- ``write_log_file``: one NXlog of N points written in chunks (the harvest bench's 10^8-point file).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np


def _group(parent: h5py.Group, name: str, nx_class: str, *, as_bytes: bool = False) -> h5py.Group:
    group = parent.create_group(name)
    group.attrs["NX_class"] = nx_class.encode() if as_bytes else nx_class
    return group


def _put(group: h5py.Group, name: str, value: Any, units: str | None = None, *, as_bytes: bool = False) -> h5py.Dataset:
    if isinstance(value, str):
        data: Any = np.bytes_(value.encode()) if as_bytes else value
    else:
        data = value
    ds = group.create_dataset(name, data=data)
    if units is not None:
        ds.attrs["units"] = units.encode() if as_bytes else units
    return ds


def _fill(group: h5py.Group, values: Mapping[str, Any], *, as_bytes: bool = False) -> None:
    """``{"name": value}`` or ``{"name": (value, "unit")}`` as datasets of ``group``."""
    for name, item in values.items():
        if isinstance(item, tuple):
            _put(group, name, item[0], item[1], as_bytes=as_bytes)
        else:
            _put(group, name, item, as_bytes=as_bytes)


def _log(parent: h5py.Group, name: str, values: Any, units: str, *, start: str | None = None) -> h5py.Group:
    log = _group(parent, name, "NXlog")
    _put(log, "value", np.asarray(values, dtype="f8"), units)
    time = _put(log, "time", np.arange(len(values), dtype="f8"), "s")
    if start:
        time.attrs["start"] = start
    return log


def write_sinq(path: Path | str) -> Path:
    """PSI SINQ FOCUS (time-of-flight spectrometer): /entry1, NXfermi_chopper, NXdisk_chopper, local times."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        fh.attrs["NeXus_version"] = b"4.3.0"
        fh.attrs["file_name"] = path.name.encode()
        fh.attrs["file_time"] = b"2007-09-03 17:30:02"
        fh.attrs["creator"] = b"FOCUS NeXus writer, SINQ"
        entry = _group(fh, "entry1", "NXentry", as_bytes=True)
        _fill(entry, {"title": "V2O5 powder 296K", "start_time": "2007-09-03 16:16:36",
                      "end_time": "2007-09-03 17:30:01", "run_number": 1342}, as_bytes=True)
        inst = _group(entry, "FOCUS", "NXinstrument", as_bytes=True)
        _put(inst, "name", "FOCUS at SINQ", as_bytes=True)
        source = _group(inst, "SINQ", "NXsource", as_bytes=True)
        _fill(source, {"name": "SINQ, Paul Scherrer Institut", "type": "Continuous flux spallation source",
                       "probe": "neutron", "current": (1.62, "mA")}, as_bytes=True)
        mono = _group(inst, "monochromator", "NXmonochromator", as_bytes=True)
        _fill(mono, {"lambda": (6.0, "Angstrom"), "energy": (2.27, "meV"), "theta": (37.4, "degree"),
                     "curvature_vertical": (120.0, "degree")}, as_bytes=True)
        fermi = _group(inst, "fermi_chopper", "NXfermi_chopper", as_bytes=True)
        _fill(fermi, {"rotation_speed": (10500.0, "rpm"), "phase": (178.2, "degree")}, as_bytes=True)
        disk = _group(inst, "disk_chopper", "NXdisk_chopper", as_bytes=True)
        _fill(disk, {"rotation_speed": (5250.0, "rpm"), "phase": (12.5, "degree"), "ratio": 2}, as_bytes=True)
        counter = _group(inst, "counter", "NXmonitor", as_bytes=True)
        _fill(counter, {"mode": "monitor", "preset": (400000.0, "counts"), "count_time": (4403.2, "s"),
                        "monitor": (400013, "counts")}, as_bytes=True)
        bank = _group(inst, "merged", "NXdetector", as_bytes=True)
        _put(bank, "counts", np.ones((375, 1024), dtype="i4"), "counts")
        _put(bank, "distance", (2500.0), "mm", as_bytes=True)
        sample = _group(entry, "sample", "NXsample", as_bytes=True)
        _fill(sample, {"name": "V2O5", "temperature": (296.4, "K"), "environment": "Orange cryostat",
                       "sample_mass": (2.1, "g")}, as_bytes=True)
        user = _group(entry, "user", "NXuser", as_bytes=True)
        _fill(user, {"name": "Lukas Keller", "affiliation": "PSI", "email": "lukas.keller@psi.example"},
              as_bytes=True)
        data = _group(entry, "merged", "NXdata", as_bytes=True)
        data["counts"] = bank["counts"]
    return path


def write_ill(path: Path | str) -> Path:
    """ILL D22 (SANS): /entry0, the NXinstrument named D22, times ``18-Sep-21 22:04:08`` (local, no zone)."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        entry = _group(fh, "entry0", "NXentry")
        _fill(entry, {"title": "vanadium calibration", "start_time": "18-Sep-21 22:04:08",
                      "end_time": "18-Sep-21 22:34:10", "run_number": 113547, "experiment_identifier": "9-11-1234",
                      "duration": (1802.0, "s"), "monitor_sum": (1.25e6, "counts")})
        inst = _group(entry, "D22", "NXinstrument")
        _put(inst, "name", "D22")
        selector = _group(inst, "selector", "NXvelocity_selector")
        _fill(selector, {"wavelength": (6.0, "Angstrom"), "rotation_speed": (23500.0, "rpm")})
        collimation = _group(inst, "collimation", "NXcollimator")
        _fill(collimation, {"actual_position": (5.6, "m")})
        detector = _group(inst, "detector", "NXdetector")
        _fill(detector, {"det_calc": (5.6, "m"), "dead_time": (2.95e-6, "s")})
        _put(detector, "data", np.zeros((128, 256), dtype="i4"), "counts")
        attenuator = _group(inst, "attenuator", "NXattenuator")
        _fill(attenuator, {"attenuation_coefficient": (1.0, "")})
        monitor = _group(entry, "monitor1", "NXmonitor")
        _put(monitor, "data", np.full(1000, 1250, dtype="i4"), "counts")
        _put(monitor, "monrate", 693.7, "counts/s")
        sample = _group(entry, "sample", "NXsample")
        _fill(sample, {"name": "vanadium", "temperature": (293.1, "K"), "thickness": (1.0, "mm")})
        user = _group(entry, "user", "NXuser")
        _fill(user, {"name": "Lionel Porcar", "namelocalcontact": "Lionel Porcar"})
    return path


def write_nxsas(path: Path | str) -> Path:
    """APS 9-ID-C USAXS pinSAXS (NXsas): /entry, times with a ``-06:00`` offset."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        fh.attrs["creator"] = "USAXS pinSAXS data collection (SPEC)"
        fh.attrs["file_name"] = path.name
        entry = _group(fh, "entry", "NXentry")
        _fill(entry, {"definition": "NXsas", "title": "S12 glassy carbon", "start_time": "2015-08-26T14:17:33-06:00",
                      "end_time": "2015-08-26T14:17:43-06:00", "run_cycle": "2015-02"})
        inst = _group(entry, "instrument", "NXinstrument")
        _put(inst, "name", "APS 9-ID-C USAXS pinSAXS")
        source = _group(inst, "source", "NXsource")
        _fill(source, {"name": "Advanced Photon Source", "type": "Synchrotron X-ray Source", "probe": "x-ray",
                       "current": (101.9, "mA"), "energy": (7.0, "GeV")})
        mono = _group(inst, "monochromator", "NXmonochromator")
        _fill(mono, {"wavelength": (0.5904, "Angstrom"), "energy": (21.0, "keV"),
                     "wavelength_spread": (8e-5, "")})
        detector = _group(inst, "detector", "NXdetector")
        _fill(detector, {"distance": (541.0, "mm"), "beam_center_x": (122.5, "pixel"),
                         "beam_center_y": (27.9, "pixel"), "x_pixel_size": (0.172, "mm"),
                         "y_pixel_size": (0.172, "mm")})
        _put(detector, "data", np.zeros((195, 487), dtype="i4"), "counts")
        slit = _group(inst, "aperture", "NXslit")
        _fill(slit, {"x_gap": (0.4, "mm"), "y_gap": (0.1, "mm")})
        sample = _group(entry, "sample", "NXsample")
        _fill(sample, {"name": "glassy carbon", "thickness": (1.055, "mm"), "aequatorial_angle": (0.0, "degree")})
        data = _group(entry, "data", "NXdata")
        data.attrs["signal"] = "data"
        data["data"] = detector["data"]
    return path


def write_nxmx(path: Path | str) -> Path:
    """A Diamond MX beamline (NXmx): /entry, NXbeam, detector distance and count time, times with ``Z``."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        entry = _group(fh, "entry", "NXentry")
        _fill(entry, {"definition": "NXmx", "title": "thaumatin_1", "start_time": "2021-03-11T14:02:11.123Z",
                      "end_time": "2021-03-11T14:03:41.481Z"})
        inst = _group(entry, "instrument", "NXinstrument")
        _put(inst, "name", "DIAMOND BEAMLINE I04")
        beam = _group(inst, "beam", "NXbeam")
        _fill(beam, {"incident_wavelength": (0.9795, "angstrom"), "flux": (3.1e12, "Hz"),
                     "incident_beam_size": (np.array([80.0, 20.0]), "micron")})
        detector = _group(inst, "detector", "NXdetector")
        _fill(detector, {"description": "Eiger 2XE 16M", "distance": (0.2275, "m"), "count_time": (0.01, "s"),
                         "sensor_material": "CdTe", "sensor_thickness": (0.00075, "m"),
                         "beam_center_x": (2071.4, "pixel"), "beam_center_y": (2190.8, "pixel")})
        source = _group(inst, "source", "NXsource")
        _fill(source, {"name": "Diamond Light Source", "type": "Synchrotron X-ray Source"})
        attenuator = _group(inst, "attenuator", "NXattenuator")
        _fill(attenuator, {"attenuator_transmission": (0.25, "")})
        sample = _group(entry, "sample", "NXsample")
        _fill(sample, {"name": "thaumatin", "temperature": (100.0, "K")})
        data = _group(entry, "data", "NXdata")
        _put(data, "data", np.zeros((10, 64, 64), dtype="u2"), "counts")
    return path


def write_nxtofraw(path: Path | str) -> Path:
    """A pulsed-source raw file (NXtofraw): /entry, run number, monitors, times with ``+0100``."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        entry = _group(fh, "entry", "NXentry")
        _fill(entry, {"definition": "NXtofraw", "title": "Ni powder", "start_time": "2012-06-14T09:33:10+0100",
                      "end_time": "2012-06-14T10:48:22+0100", "run_number": 25811, "duration": (4512.0, "s"),
                      "proton_charge": (151.3, "uA.hour"), "pre_sample_flightpath": (14.0, "m")})
        inst = _group(entry, "instrument", "NXinstrument")
        _put(inst, "name", "GEM")
        moderator = _group(inst, "moderator", "NXmoderator")
        _fill(moderator, {"type": "CH4", "temperature": (110.0, "K")})
        detector = _group(inst, "detector_1", "NXdetector")
        _put(detector, "counts", np.zeros((64, 2000), dtype="i4"))
        _put(detector, "polar_angle", np.linspace(10, 160, 64), "degree")
        monitor = _group(entry, "monitor_1", "NXmonitor")
        _put(monitor, "data", np.full(2000, 37, dtype="i4"), "counts")
        _put(monitor, "integral", 74000, "counts")
        sample = _group(entry, "sample", "NXsample")
        _fill(sample, {"name": "Ni", "nature": "powder", "temperature": (10.0, "K")})
        user = _group(entry, "user_1", "NXuser")
        _fill(user, {"name": "Ron Smith", "affiliation": "ISIS"})
    return path


def write_gda_scan(path: Path | str) -> Path:
    """A Diamond GDA scan (i16): /entry1, scan_command, positioners before the scan, naive local times."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        entry = _group(fh, "entry1", "NXentry")
        _fill(entry, {"title": "scan eta 20 22 0.01 pil 1", "scan_command": "scan eta 20 22 0.01 pil 1",
                      "start_time": "2019-03-15T10:23:45.123", "end_time": "2019-03-15T10:31:02.500",
                      "entry_identifier": "791234", "experiment_identifier": "mm21788-1",
                      "program_name": "GDA 9.12.0"})
        inst = _group(entry, "instrument", "NXinstrument")
        _put(inst, "name", "i16")
        source = _group(inst, "source", "NXsource")
        _fill(source, {"name": "DLS", "probe": "x-ray", "current": (300.1, "mA"), "energy": (3.0, "GeV")})
        mono = _group(inst, "monochromator", "NXmonochromator")
        _fill(mono, {"energy": (8.0, "keV")})
        before = _group(entry, "before_scan", "NXcollection")
        for name, (value, units) in {"delta": (40.2, "deg"), "gam": (0.0, "deg"), "mu": (0.0, "deg"),
                                     "Ta": (12.1, "K")}.items():
            pos = _group(before, name, "NXpositioner")
            _put(pos, "value", value, units)
        sample = _group(entry, "sample", "NXsample")
        _fill(sample, {"name": "Fe3O4 (001)", "ub_matrix": (np.eye(3), "")})
        user = _group(entry, "user01", "NXuser")
        _fill(user, {"name": "Steve Collins", "username": "sc12345"})
        measurement = _group(entry, "measurement", "NXdata")
        _put(measurement, "eta", np.linspace(20, 22, 201), "deg")
        _put(measurement, "sum", np.zeros(201))
    return path


def write_ess(path: Path | str, *, log_points: int = 100) -> Path:
    """kafka-to-nexus at ESS (LOKI): /@creator, entry_identifier_uuid, f144 NXlogs with kafka-to-nexus's statistics."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        fh.attrs["HDF5_Version"] = h5py.version.hdf5_version
        fh.attrs["file_name"] = path.name
        fh.attrs["creator"] = "kafka-to-nexus commit 3f4e5a1"
        entry = _group(fh, "entry", "NXentry")
        _fill(entry, {"title": "LoKI commissioning", "entry_identifier_uuid": "0e3f2b7c-33f4-4b0a-9a0d-000000000019",
                      "entry_identifier": "19", "experiment_identifier": "443503",
                      "start_time": "2024-10-28T09:18:14.376Z", "end_time": "2024-10-28T09:48:14.000Z"})
        inst = _group(entry, "instrument", "NXinstrument")
        _put(inst, "name", "LOKI")
        source = _group(inst, "source", "NXsource")
        _fill(source, {"name": "European Spallation Source", "probe": "neutron", "type": "Spallation Neutron Source"})
        chopper = _group(inst, "band_chopper", "NXdisk_chopper")
        _log(chopper, "rotation_speed", np.full(log_points, 14.0), "Hz")
        sample = _group(entry, "sample", "NXsample")
        _put(sample, "name", "SiO2 spheres")
        temperature = _log(sample, "temperature", 290.0 + np.linspace(0, 2, log_points), "K",
                           start="2024-10-28T09:18:14Z")
        _put(temperature, "minimum_value", 290.0, "K")
        _put(temperature, "maximum_value", 292.0, "K")
        user = _group(entry, "user_AdaLovelace", "NXuser")
        _fill(user, {"name": "Ada Lovelace", "affiliation": "ESS", "email": "ada@ess.example"})
    return path


def write_isis(path: Path | str) -> Path:
    """ISIS raw (LOQ): raw_data_1, selog NXlogs, naive UK local times."""
    path = Path(path)
    with h5py.File(path, "w") as fh:
        fh.attrs["file_name"] = r"c:\data\LOQ49886.nxs"
        fh.attrs["file_time"] = "2009-04-28T10:47:44"
        entry = _group(fh, "raw_data_1", "NXentry")
        _fill(entry, {"title": "LOQ sample run", "start_time": "2009-04-28T09:20:29", "end_time": "2009-04-28T10:47:44",
                      "run_number": 49886, "experiment_identifier": "1820123", "good_frames": 130000,
                      "duration": (5233.0, "second")})
        inst = _group(entry, "instrument", "NXinstrument")
        _put(inst, "name", "LOQ")
        selog = _group(entry, "selog", "IXselog")
        block = _group(selog, "Temp_Sample", "IXseblock")
        _log(block, "value_log", np.linspace(20.0, 21.0, 50), "C")
        sample = _group(entry, "sample", "NXsample")
        _fill(sample, {"name": "polymer", "thickness": (2.0, "mm")})
        user = _group(entry, "user_1", "NXuser")
        _fill(user, {"name": "Grace Hopper", "affiliation": "ISIS"})
    return path


#: Every facility's writer, by a short name (tests parametrize over it).
FACILITIES = {"sinq": write_sinq, "ill": write_ill, "aps_nxsas": write_nxsas, "diamond_nxmx": write_nxmx,
              "nxtofraw": write_nxtofraw, "diamond_gda": write_gda_scan, "ess": write_ess, "isis": write_isis}


def write_log_file(path: Path | str, points: int, *, chunk: int = 1 << 20) -> Path:
    """A generic NeXus file whose sample temperature is an NXlog of ``points`` doubles, written in chunks.

    Why chunked: the harvest bench's 10^8-point log is 800 MB of values; writing it slice by slice keeps
    the writer's own memory flat as well.
    """
    path = Path(path)
    with h5py.File(path, "w") as fh:
        entry = _group(fh, "entry", "NXentry")
        _fill(entry, {"title": f"log of {points} points", "start_time": "2024-01-01T00:00:00Z"})
        inst = _group(entry, "instrument", "NXinstrument")
        _put(inst, "name", "BENCH")
        sample = _group(entry, "sample", "NXsample")
        _put(sample, "name", "bench sample")
        log = _group(sample, "temperature", "NXlog")
        value = log.create_dataset("value", shape=(points,), dtype="f8", chunks=(min(points, 1 << 16),))
        value.attrs["units"] = "K"
        for start in range(0, points, chunk):
            stop = min(points, start + chunk)
            value[start:stop] = 290.0 + (np.arange(start, stop, dtype="f8") % 1000) / 100.0
    return path
