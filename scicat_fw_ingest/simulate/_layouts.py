"""The packaged nexus_structure layouts of the simulated writer and their ``${...}`` placeholders."""

from __future__ import annotations

import string
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from .._time import iso_ms
from ..nexus.writer import NexusStructureError, check_structure, parse_structure
from ._job import SimulatedJob

LAYOUTS = ("ess", "isis")
DEFAULT_POOL_TOPIC = "sfi_pool"
DEFAULT_PROPOSAL = "123456"
DEFAULT_INSTRUMENT = {"ess": "DUMMY", "isis": "LOQ"}
#: The wrdn message of a job ended with ``--fail write-error``.
FAILURE_MESSAGE = "simulated write failure (sfi produce-test --fail write-error)"

#: ``${name}`` placeholders filled per job in a template's string values (also in --nexus-structure files).
PLACEHOLDERS: dict[str, str] = {
    "job_id": "the job's UUID (pl72 job_id)",
    "run_name": "the pl72 run_name",
    "run_number": "the run number (a number; ESS entry_identifier, ISIS run_number)",
    "filename": "the pl72 filename (relative to the output directory)",
    "file_path": "the absolute path reported in wrdn",
    "proposal_id": "the proposal (experiment_identifier)",
    "title": "'Simulated run <run_number> on <instrument>'",
    "instrument": "the instrument name as given", "instrument_lower": "the instrument name in lower case",
    "sample_name": "'Simulated sample <run_number>'",
    "user_name": "'Simulated User'", "user_email": "'simulated.user@example.org'",
    "user_affiliation": "'sfi simulation'", "user_id": "'simuser'",
    "start_time": "run start, ISO-8601 UTC", "end_time": "run stop, ISO-8601 UTC",
    "duration": "run length in seconds", "good_frames": "duration x 10", "total_counts": "good_frames x 100",
}


def template_text(layout: str) -> str:
    """The packaged default nexus_structure of a layout (with its ``${...}`` placeholders)."""
    if layout not in LAYOUTS:
        raise NexusStructureError(f"layout '{layout}': unknown (known: {', '.join(LAYOUTS)})")
    return resources.files("scicat_fw_ingest").joinpath("templates", f"sim_{layout}.json").read_text("utf-8")


def load_structure_file(path: str | Path) -> dict[str, Any]:
    """A nexus_structure file, checked by writing it in memory; errors name the file."""
    source = f"nexus structure file {path}"
    try:
        text = Path(path).read_text("utf-8")
    except OSError as exc:
        raise NexusStructureError(f"{source}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise NexusStructureError(f"{source}: not UTF-8 text: {exc.reason}") from None
    structure = parse_structure(text, source)
    check_structure(fill_placeholders(structure, _sample_values()), source)
    return structure


def fill_placeholders(structure: Any, values: Mapping[str, str]) -> Any:
    """A copy of ``structure`` with ``${name}`` replaced in every string; unknown names stay as written."""
    if isinstance(structure, str):
        return string.Template(structure).safe_substitute(values)
    if isinstance(structure, list):
        return [fill_placeholders(v, values) for v in structure]
    if isinstance(structure, dict):
        return {k: fill_placeholders(v, values) for k, v in structure.items()}
    return structure


def placeholder_values(job: SimulatedJob, *, run_number: int, proposal_id: str, instrument: str) -> dict[str, str]:
    start, stop = job.start_time, job.stop_time or job.start_time
    duration = (stop - start) / 1000
    good_frames = int(duration * 10)
    return {
        "job_id": job.job_id, "run_name": job.run_name, "run_number": str(run_number), "filename": job.filename,
        "file_path": job.written_path or job.filename, "proposal_id": proposal_id,
        "title": f"Simulated run {run_number} on {instrument}", "instrument": instrument,
        "instrument_lower": instrument.lower(), "sample_name": f"Simulated sample {run_number}",
        "user_name": "Simulated User", "user_email": "simulated.user@example.org",
        "user_affiliation": "sfi simulation", "user_id": "simuser",
        "start_time": iso_ms(start), "end_time": iso_ms(stop), "duration": f"{duration:g}",
        "good_frames": str(good_frames), "total_counts": str(good_frames * 100),
    }


def _sample_values() -> dict[str, str]:
    job = SimulatedJob(filename="check.nxs", start_time=0, stop_time=1000)
    return placeholder_values(job, run_number=1, proposal_id=DEFAULT_PROPOSAL, instrument="CHECK")
