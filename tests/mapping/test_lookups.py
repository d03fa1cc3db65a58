"""scicat: profile sources on the real backend: the proposal's PI and email, the instrument's pid (issue 12 item 3)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from scicat_fw_ingest.ingest import Ingestor
from scicat_fw_ingest.scicat import ScicatClient
from scicat_fw_ingest.testing.backend import ACCOUNTS, RealBackend
from scicat_fw_ingest.testing.dry_run import make_cfg
from scicat_fw_ingest.testing.nexus_files import write_ess

USERS = [{"name": "Zoe Alphabetical", "email": "zoe@example.org"}]


def _proposal(backend: RealBackend, proposal_id: str, access: list[str]) -> None:
    status, doc = backend.request("POST", "/api/v3/Proposals", {
        "proposalId": proposal_id, "title": "lookup test", "email": "office@example.org",
        "pi_email": "ada@example.org", "pi_firstname": "Ada", "pi_lastname": "Lovelace",
        "ownerGroup": f"group-{proposal_id}", "accessGroups": access})
    assert status == 201, doc


def _instrument(backend: RealBackend, name: str) -> str:
    status, doc = backend.request("POST", "/api/v3/Instruments", {"uniqueName": name, "name": name})
    assert status == 201, doc
    return str(doc["pid"])


def _client(backend: RealBackend) -> ScicatClient:
    return ScicatClient(backend.url, username="ingestor", password=ACCOUNTS["ingestor"], timeout=10,
                        max_attempts=2, backoff=0.01)


def test_proposal_and_instrument_fill_pi_email_groups_and_instrument_id(real_scicat: RealBackend,
                                                                        tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    # not "ymir...": the parity test's scicat-ingestor schema finds "ymir" by a substring match (ilike) in the
    # same shared backend, and would find this one too
    proposal, instrument = f"P1-{tag}", f"lkp{tag}"
    _proposal(real_scicat, proposal, ["ingestor"])
    instrument_pid = _instrument(real_scicat, instrument)
    path = write_ess(tmp_path / "p1.nxs", uuid=str(uuid.uuid4()), proposal=proposal, instrument=instrument.upper(),
                     users=USERS)
    client = _client(real_scicat)
    ingestor = Ingestor(make_cfg(), client, checksum="none")
    result = ingestor.ingest(str(path))
    assert result.status == "created", result.error
    ds = result.dataset
    assert ds is not None
    assert ds["principalInvestigator"] == ds["owner"] == "Ada Lovelace"   # not the file's user
    assert ds["contactEmail"] == ds["ownerEmail"] == "ada@example.org"
    assert ds["ownerGroup"] == f"group-{proposal}" and ds["accessGroups"] == ["ingestor"]
    assert ds["instrumentId"] == instrument_pid                              # LKP... matched case-insensitively
    status, stored = real_scicat.request("GET", "/api/v3/Datasets/" + ds["pid"].replace("/", "%2F"))
    assert status == 200 and stored["instrumentId"] == instrument_pid
    assert stored["principalInvestigator"] == "Ada Lovelace"

    # --explain names the request; a second file of the same proposal is answered from the cache
    rows = {f: (v, o) for f, v, o in ingestor.explain(str(path))}
    assert rows["principalInvestigator"][1] == f"scicat:proposal.pi_name (GET Proposals/{proposal})"
    assert rows["instrumentId"][1].startswith("scicat:instrument.pid (GET Instruments")
    asked = ingestor.lookup.requests if ingestor.lookup else -1
    second = write_ess(tmp_path / "p1b.nxs", uuid=str(uuid.uuid4()), proposal=proposal, instrument=instrument,
                       users=USERS)
    again = ingestor.ingest(str(second)).dataset
    assert again is not None and again["instrumentId"] == instrument_pid
    assert ingestor.lookup is not None and ingestor.lookup.requests == asked
    other = write_ess(tmp_path / "p1c.nxs", uuid=str(uuid.uuid4()), proposal=proposal, instrument=f"other{tag}",
                      users=USERS)
    assert "instrumentId" not in (ingestor.ingest(str(other)).dataset or {"instrumentId": 1})
    assert ingestor.lookup.requests == asked   # the instrument list is fetched once, not once per name


def test_no_lookup_is_sent_while_the_hdf5_lock_is_held(real_scicat: RealBackend, tmp_path: Path) -> None:
    """A slow SciCat must not stall the process's other files: lookups go out with the HDF5 lock released."""
    from scicat_fw_ingest.nexus.reader import HDF5_LOCK

    tag = uuid.uuid4().hex[:8]
    proposal, instrument = f"P4-{tag}", f"loki{tag}"
    _proposal(real_scicat, proposal, ["ingestor"])
    instrument_pid = _instrument(real_scicat, instrument)
    client = _client(real_scicat)
    held: list[str] = []
    get_json = client.get_json

    def observed(path: str, params: dict[str, str] | None = None, **kw: object) -> object:
        held.append(f"{path} lock={HDF5_LOCK._is_owned()}")  # type: ignore[attr-defined]
        return get_json(path, params, **kw)  # type: ignore[arg-type]

    client.get_json = observed  # type: ignore[method-assign]  # observes the real client, answers unchanged
    ingestor = Ingestor(make_cfg(), client, checksum="none")
    path = write_ess(tmp_path / "p4.nxs", uuid=str(uuid.uuid4()), proposal=proposal, instrument=instrument,
                     users=USERS)
    result = ingestor.ingest(str(path))
    assert result.status == "created", result.error
    assert result.dataset is not None and result.dataset["instrumentId"] == instrument_pid
    assert result.dataset["principalInvestigator"] == "Ada Lovelace"
    assert len(held) >= 2 and all(entry.endswith("lock=False") for entry in held), held


def test_unknown_or_unreadable_proposal_falls_back(real_scicat: RealBackend, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    tag = uuid.uuid4().hex[:8]
    hidden = f"P2-{tag}"
    _proposal(real_scicat, hidden, [])   # the ingestor account may not read it: 403
    ingestor = Ingestor(make_cfg(), _client(real_scicat), checksum="none")
    unknown = ingestor.ingest(str(write_ess(tmp_path / "u.nxs", uuid=str(uuid.uuid4()), proposal=f"none-{tag}",
                                            instrument=f"nosuch{tag}", users=USERS)), skip_existing=False)
    assert unknown.dataset is not None
    assert unknown.dataset["principalInvestigator"] == "Zoe Alphabetical"   # as before lookups existed
    assert unknown.dataset["contactEmail"] == "zoe@example.org" and "instrumentId" not in unknown.dataset
    path = write_ess(tmp_path / "h.nxs", uuid=str(uuid.uuid4()), proposal=hidden, users=USERS)
    rows = ingestor.explain(str(path))
    warnings = [str(v) for f, v, _ in rows if f == "(warning)"]
    assert any(f"refused: GET Proposals/{hidden} answered 403" in w for w in warnings), rows
    assert dict((f, v) for f, v, _ in rows)["principalInvestigator"] == "Zoe Alphabetical"
    assert "SciCat refused the lookup" in caplog.text


def test_local_catalogue_sink_means_no_lookups(tmp_path: Path) -> None:
    from scicat_fw_ingest.catalogue import CatalogueDir

    assert Ingestor(make_cfg(), CatalogueDir(str(tmp_path / "cat"))).lookup is None
    assert Ingestor(make_cfg(), None).lookup is None


def test_cli_explain_shows_the_request(real_scicat: RealBackend, tmp_path: Path) -> None:
    from scicat_fw_ingest.testing.sfi_process import run_sfi

    tag = uuid.uuid4().hex[:8]
    proposal = f"P1-{tag}"
    _proposal(real_scicat, proposal, ["ingestor"])
    path = write_ess(tmp_path / "e.nxs", uuid=str(uuid.uuid4()), proposal=proposal, users=USERS)
    env = {"SFI_SCICAT_URL": real_scicat.url, "SFI_SCICAT_USERNAME": "ingestor",
           "SFI_SCICAT_PASSWORD": ACCOUNTS["ingestor"]}
    run = run_sfi("ingest-file", "--explain", "--json", str(path), env=env)
    assert run.returncode == 0, run.stderr
    fields = {row["field"]: row for row in json.loads(run.stdout)["fields"]}
    assert fields["contactEmail"]["value"] == "ada@example.org"
    assert fields["contactEmail"]["source"] == f"scicat:proposal.pi_email (GET Proposals/{proposal})"
    assert ACCOUNTS["ingestor"] not in run.stdout + run.stderr


def test_sample_lookup_by_id_then_by_description(real_scicat: RealBackend, tmp_path: Path) -> None:
    import h5py

    from scicat_fw_ingest.testing.dry_run import write_profile

    tag = uuid.uuid4().hex[:8]
    body = {"description": f"silicon powder {tag}", "owner": "Ada", "ownerGroup": "ingestor",
            "accessGroups": ["ingestor"], "sampleCharacteristics": {"mass": "2 g"}}
    if real_scicat.version >= "5":
        body["sampleName"] = f"silicon powder {tag}"   # required from 5 on; the server makes the sampleId
    status, doc = real_scicat.request("POST", "/api/v3/Samples", body)
    assert status == 201, doc
    sample_id = str(doc["sampleId"])
    folder = tmp_path / "profiles"
    write_profile(folder, "samples", '[profile]\nextends = "ess"\n[fields]\nsampleId = "scicat:sample.sampleId"\n'
                  '[scientific]\nsample_mass = "scicat:sample.sampleCharacteristics.mass"\n')
    ingestor = Ingestor(make_cfg(profile_dirs=[str(folder)]), _client(real_scicat), checksum="none")
    for name in (sample_id, f"silicon powder {tag}"):
        path = write_ess(tmp_path / f"{len(name)}.nxs", uuid=str(uuid.uuid4()), users=USERS)
        with h5py.File(path, "a") as fh:
            del fh["entry/sample/name"]
            fh["entry/sample"].create_dataset("name", data=name)
        result = ingestor.ingest(str(path), skip_existing=False)
        assert result.dataset is not None, result.error
        assert result.dataset["sampleId"] == sample_id, name
        assert result.dataset["scientificMetadata"]["sample_mass"]["value"] == "2 g"


def test_scicat_down_during_a_lookup_fails_the_file_as_retryable(tmp_path: Path) -> None:
    """Never a dataset whose owner depends on whether SciCat answered: the file waits for a retry."""
    from scicat_fw_ingest.testing.scicat_server import ScicatTestServer

    with ScicatTestServer() as server:
        client = ScicatClient(server.url, token=server.token, timeout=5, max_attempts=2, backoff=0.01)
        server.fail_next(2, 503, path_contains="Proposals")
        path = write_ess(tmp_path / "down.nxs", proposal="P-down", users=USERS)
        result = Ingestor(make_cfg(), client, checksum="none").ingest(str(path))
        assert result.status == "failed" and result.retryable, result
        assert "Proposals" in (result.error or "") and "503" in (result.error or "")
        assert not server.datasets
        again = Ingestor(make_cfg(), client, checksum="none").ingest(str(path))   # SciCat is back: 404 = no proposal
        assert again.status == "created", again.error
        assert again.pid is not None and server.datasets[again.pid]["principalInvestigator"] == "Zoe Alphabetical"
