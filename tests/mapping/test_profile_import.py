"""`sfi profile import`: scicat-ingestor schemas become sfi profiles (issue 12 item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from scicat_fw_ingest.mapping import ProfileSet
from scicat_fw_ingest.mapping.imsc import convert_schema
from scicat_fw_ingest.testing.dry_run import dry, make_cfg
from scicat_fw_ingest.testing.sfi_process import run_sfi

SCHEMAS = "scicat-ingestor-schemas"


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from scicat_fw_ingest.testing.checkout import SHARED_DATA

    if not (SHARED_DATA / SCHEMAS).is_dir():
        pytest.skip(f"{SHARED_DATA / SCHEMAS} is absent")
    out = tmp_path_factory.mktemp("imported")
    run = run_sfi("profile", "import", *sorted(str(p) for p in (SHARED_DATA / SCHEMAS).glob("*.imsc.yml")),
                  "-o", str(out))
    assert run.returncode == 0, run.stderr
    return out, run.stderr


def test_every_shared_schema_converts_and_loads(converted: tuple[Path, str]) -> None:
    out, notes = converted
    names = sorted(p.stem for p in out.glob("*.toml"))
    assert names == ["base", "coda", "dream", "ess-fallback", "loki", "small-coda", "small-ymir"]
    profiles = ProfileSet([str(out)])   # every converted profile validates
    assert profiles.get("small-ymir").fields["instrumentId"].sources[0].label == "scicat:instrument.pid"
    # the known upstream mistakes are reported, one line each, naming the file
    assert "coda.imsc.yml: variables.pi_lastname: field ':pi_lastname' (upstream mistake)" in notes
    assert "coda.imsc.yml: schema.instrument_id: value 'instrument_id' names a variable without <...>" in notes
    assert "coda.imsc.yml: schema.location: 'location' is not a SciCat dataset field" in notes
    assert "ess-fallback.imsc.yml: variables.dataset_name: path 'entry/title' is not absolute" in notes
    assert all(line.startswith("sfi: profile import: ") for line in notes.splitlines())


@pytest.mark.parametrize("name", ["small-coda", "small-ymir"])
def test_converted_profile_ingests_like_builtin_ess(converted: tuple[Path, str], shared_data: Path,
                                                   name: str) -> None:
    out, _ = converted
    cfg = make_cfg(pid_prefix="20.500.12269/", profile_dirs=[str(out)])
    path = shared_data / "ess_coda_small.hdf"
    builtin = dry(cfg, path, profile="ess")
    imported = dry(cfg, path, profile=name)
    assert imported["pid"] == builtin["pid"] == "20.500.12269/f22acb1c-950b-11ef-a3ef-fa163e9aae0a"
    for key in ("datasetName", "proposalId"):
        assert imported[key] == builtin[key], key
    sci, sci_builtin = imported["scientificMetadata"], builtin["scientificMetadata"]
    assert sci["start_time"]["value"] == sci_builtin["start_time"]["value"] == builtin["startTime"]
    assert sci["end_time"]["value"] == builtin["endTime"]
    assert sci["start_time"]["human_name"] == "Start Time"
    if name == "small-ymir":
        assert (imported["startTime"], imported["endTime"]) == (builtin["startTime"], builtin["endTime"])
        assert imported["keywords"] == ["YMIR"]
        # scicat-ingestor's join_with_space joins with ", " into one string; the schema's type is kept (issue 19)
        team = sci["acquisition_team_members"]
        assert team == {"value": "Anders Pettersson, Fredrik Bolmsten, George ONeill, Jonas Petersson, "
                                 "Massimiliano Novelli, Matt Clarke", "unit": "", "type": "string",
                        "human_name": "Acquisition Team Members"}
        assert "harvest" not in (out / f"{name}.toml").read_text()   # converted datasets stay what the schema says
    assert imported["accessGroups"] == ["scientific information management systems group"]
    assert imported["ownerGroup"] == ("ess_proposal_443503" if name == "small-coda" else "443503")


def test_unconvertible_parts_are_listed_and_profile_still_loads(tmp_path: Path) -> None:
    schema = {
        "name": "odd", "selector": {"and": ["filename:contains:a", "filename:contains:b"]},
        "variables": {
            "title": {"source": "NXS", "path": "/entry/title", "value_type": "string"},
            "lower": {"source": "VALUE", "operator": "to-lower", "value": "<title>", "value_type": "string"},
            "pair": {"source": "VALUE", "value": "<title> <lower>", "value_type": "string"},
            "counts": {"source": "NXS", "path": "/entry/det_*/total", "value_type": "integer[]"},
            "total": {"source": "VALUE", "operator": "sum", "value": "<counts>", "value_type": "integer"},
            "weird": {"source": "SC", "url": "datasets/x", "field": "pid", "value_type": "string"},
            "sample_name": {"source": "NXS", "path": "/entry/sample/name", "value_type": "string"},
            "sample_id": {"source": "SC", "url": "samples/<sample_name>", "field": "sampleId", "value_type": "string"},
        },
        "schema": {
            "name": {"field_type": "high_level", "machine_name": "datasetName", "value": "Run <title>",
                     "type": "string"},
            "lower": {"field_type": "scientific_metadata", "machine_name": "lower", "value": "<lower>"},
            "pair": {"field_type": "scientific_metadata", "machine_name": "pair", "value": "<pair>"},
            "total": {"field_type": "scientific_metadata", "machine_name": "total", "value": "<total>",
                      "type": "integer", "unit": "counts"},
            "weird": {"field_type": "scientific_metadata", "machine_name": "weird", "value": "<weird>"},
            "sample": {"field_type": "high_level", "machine_name": "sampleId", "value": "<sample_id>"},
        },
    }
    conv = convert_schema(schema, "odd", "odd.imsc.yml")
    joined = "\n".join(conv.notes)
    assert "variables.lower: operator 'to-lower' has no sfi equivalent" in joined
    assert "'<title> <lower>' combines several variables" in joined
    assert "SciCat GET 'datasets/x' has no sfi equivalent" in joined
    assert "not expressible as path globs; the profile is used only with --profile" in joined
    assert 'datasetName = { from = ["nexus:/entry/title"], format = "Run {value}" }' in conv.toml
    assert 'sample = ["nexus:/entry/sample/name"]' in conv.toml
    assert 'sampleId = { from = ["scicat:sample.sampleId"] }' in conv.toml
    assert ('total = { from = ["nexus:/entry/det_*/total"], sum = true, type = "int", type_name = "integer", '
            'unit = "counts" }') in conv.toml
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "odd.toml").write_text(conv.toml)
    assert ProfileSet([str(folder)]).get("odd").fields["datasetName"].format == "Run {value}"


def test_bad_input_is_one_line_and_existing_profiles_are_kept(tmp_path: Path) -> None:
    bad = tmp_path / "bad.imsc.yml"
    bad.write_text("schema: [unclosed\n")
    notschema = tmp_path / "list.imsc.yml"
    notschema.write_text("- a\n- b\n")
    run = run_sfi("profile", "import", str(bad), str(notschema), "-o", str(tmp_path / "out"))
    assert run.returncode == 1
    assert "bad.imsc.yml: not valid YAML" in run.stderr and "list.imsc.yml: not a scicat-ingestor" in run.stderr
    assert "Traceback" not in run.stderr
    good = tmp_path / "good.imsc.yml"
    good.write_text("selector: '*'\nschema:\n  t:\n    field_type: high_level\n    machine_name: datasetName\n"
                    "    value: fixed\n")
    assert run_sfi("profile", "import", str(good), "-o", str(tmp_path / "out")).returncode == 0
    again = run_sfi("profile", "import", str(good), "-o", str(tmp_path / "out"))
    assert again.returncode == 1 and "exists already (--force overwrites it)" in again.stderr
