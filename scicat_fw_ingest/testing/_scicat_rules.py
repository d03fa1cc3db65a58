"""The SciCat v3 validation rules the test server enforces, as observed on the live backend.

Kept apart from the HTTP and storage code so each rule can be read (and checked against
``shared/docs/scicat-api.md``) on its own. Messages imitate class-validator's wording because the
client passes the server's messages on to operators, and tests assert on them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_EMAIL = re.compile(r"^[^@\s;]+@[^@\s;]+\.[^@\s;]+$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")

_STR, _INT, _NUM, _ISO, _EMAILS, _LIST_STR, _OBJ, _LIST_OBJ, _BOOL = (
    "string", "integer", "number", "iso", "emails", "list_str", "object", "list_obj", "bool")

#: v3 raw dataset whitelist: field -> (kind, required).
DATASET_FIELDS: dict[str, tuple[str, bool]] = {
    "ownerGroup": (_STR, True), "owner": (_STR, True), "contactEmail": (_EMAILS, True),
    "sourceFolder": (_STR, True), "creationTime": (_ISO, True), "principalInvestigator": (_STR, True),
    "creationLocation": (_STR, True), "type": (_STR, True),
    "pid": (_STR, False), "datasetName": (_STR, False), "accessGroups": (_LIST_STR, False),
    "instrumentGroup": (_STR, False), "ownerEmail": (_EMAILS, False), "orcidOfOwner": (_STR, False),
    "sourceFolderHost": (_STR, False), "size": (_INT, False), "packedSize": (_INT, False),
    "numberOfFiles": (_INT, False), "keywords": (_LIST_STR, False), "description": (_STR, False),
    "scientificMetadata": (_OBJ, False), "startTime": (_ISO, False), "endTime": (_ISO, False),
    "dataFormat": (_STR, False), "sampleId": (_STR, False), "instrumentId": (_STR, False),
    "proposalId": (_STR, False), "techniques": (_LIST_OBJ, False), "sharedWith": (_LIST_STR, False),
    "isPublished": (_BOOL, False), "license": (_STR, False), "runNumber": (_STR, False),
}
DATABLOCK_FIELDS: dict[str, tuple[str, bool]] = {
    "size": (_INT, True), "dataFileList": (_LIST_OBJ, True), "chkAlg": (_STR, False),
    "ownerGroup": (_STR, False), "accessGroups": (_LIST_STR, False),
}
DATAFILE_FIELDS: dict[str, tuple[str, bool]] = {
    "path": (_STR, True), "size": (_NUM, True), "time": (_ISO, True), "chk": (_STR, False),
    "uid": (_STR, False), "gid": (_STR, False), "perm": (_STR, False), "type": (_STR, False),
}
_KIND_TEXT = {_STR: "must be a string", _INT: "must be an integer number", _NUM: "must be a number",
              _ISO: "must be a valid ISO 8601 date string", _EMAILS: "must be an email",
              _LIST_STR: "must be an array of strings", _OBJ: "must be an object",
              _LIST_OBJ: "must be an array of objects", _BOOL: "must be a boolean value"}


def _kind_ok(kind: str, value: Any) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _INT:
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == _NUM:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == _ISO:
        return isinstance(value, str) and bool(_ISO_DATE.match(value)) and _parses(value)
    if kind == _EMAILS:
        return isinstance(value, str) and all(_EMAIL.match(p.strip()) for p in value.split(";"))
    if kind == _LIST_STR:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == _OBJ:
        return isinstance(value, dict)
    if kind == _LIST_OBJ:
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    return isinstance(value, bool)


def _parses(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def validate(body: Any, fields: dict[str, tuple[str, bool]], prefix: str = "") -> list[str]:
    """class-validator style messages for ``body`` against a whitelist; empty when valid."""
    if not isinstance(body, dict):
        return [f"{prefix or 'body'} must be an object"]
    errors = [f"property {prefix}{k} should not exist" for k in body if k not in fields]
    for name, (kind, required) in fields.items():
        if name not in body or body[name] is None:
            if required:
                errors.append(f"{prefix}{name} should not be empty")
        elif not _kind_ok(kind, body[name]):
            errors.append(f"{prefix}{name} {_KIND_TEXT[kind]}")
    return errors


def validate_dataset(body: Any) -> list[str]:
    """The whitelist, then the checks it cannot express (only raw datasets, a non-empty folder)."""
    errors = validate(body, DATASET_FIELDS)
    if not errors:
        if body["type"] != "raw":
            errors.append("type must be one of the following values: raw")
        if not body["sourceFolder"]:
            errors.append("sourceFolder should not be empty")
    return errors


def validate_datablock(body: Any, *, flat: bool) -> list[str]:
    """``flat``: the /OrigDatablocks route, where the body itself must name its dataset."""
    fields = {**DATABLOCK_FIELDS, "datasetId": (_STR, True)} if flat else DATABLOCK_FIELDS
    errors = validate(body, fields)
    if errors:
        return errors
    if body.get("chkAlg") == "":
        errors.append("chkAlg should not be empty")
    if not body["dataFileList"]:
        errors.append("dataFileList should not be empty")
    for i, entry in enumerate(body["dataFileList"]):
        errors += validate(entry, DATAFILE_FIELDS, prefix=f"dataFileList.{i}.")
    return errors
