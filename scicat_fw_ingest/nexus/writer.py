"""Write a real NeXus (HDF5) file from a kafka-to-nexus ``nexus_structure``, as the file writer would.

Why: the simulated file writer (``sfi produce-test``) must leave behind files that the ingest path
reads exactly like files written at the facility, so the whole pipeline can be exercised without a
file writer. Static content (groups, attributes, ``dataset`` modules, ``link`` modules, ``mdat``
times) is written as given; stream modules (f144, ev44, da00, ...) get a few simulated values in the
layout kafka-to-nexus uses for them, so that links into them resolve and readers find real arrays.

Conventions follow kafka-to-nexus (../shared/docs/filewriter-protocol.md): uint64 ns times, int64
``cue_index``, ``units`` on f144 values (``""`` when none is configured), ``topic``/``source``/
``writer_module`` attributes on every stream's group, hard links, and a ``dataset`` without a type
stored as double. Like the writer, the old ``{"type": "stream"}`` form is ignored (reported as a
warning); the older ``{"type": "dataset"}`` and ``{"type": "link"}`` forms are still written. A stream
module the writer does not have is reported by ``unknown_stream_modules``: kafka-to-nexus rejects
such a job whole (answ 500, no file), so ``simulate`` does the same. A malformed structure is a
``NexusStructureError`` naming the place in the file.
"""

from __future__ import annotations

import json
import posixpath
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._time import iso_ms
from ..errors import SfiError
from ._streams import (
    ARRAY_MODULES,
    ASCII,
    CHUNK_ELEMENTS,
    CHUNK_ROWS,
    DEFAULT_CHUNK_ROWS,
    STREAMS,
    STRING,
    StreamData,
    numpy_dtype,
)

CREATOR = "sfi-simulated-writer"

#: Writer modules sfi writes (static ones and simulated streams).
KNOWN_MODULES = ("dataset", "link", "mdat", *STREAMS)


class NexusStructureError(SfiError):
    """The nexus_structure cannot be written: says where in the structure and why."""

    exit_code = 2


class NexusWriteError(SfiError):
    """The file itself cannot be written (exists already, directory missing, no permission)."""


@dataclass
class WriteReport:
    """What was written, so callers can log it and tests can check it."""

    path: Path | None
    groups: int = 0
    datasets: int = 0
    links: int = 0
    #: stream/static module name -> how many were written.
    modules: dict[str, int] = field(default_factory=dict)
    #: Unknown modules, dangling links and the like: one line each, naming the place.
    warnings: list[str] = field(default_factory=list)


def parse_structure(nexus_structure: dict[str, Any] | str, source: str = "nexus_structure") -> dict[str, Any]:
    """The structure as a dict; ``NexusStructureError`` naming ``source`` when it is not one."""
    if isinstance(nexus_structure, str):
        try:
            nexus_structure = json.loads(nexus_structure)
        except json.JSONDecodeError as exc:
            raise NexusStructureError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(nexus_structure, dict):
        raise NexusStructureError(f"{source}: must be a JSON object with 'children', not {_kind(nexus_structure)}")
    children = nexus_structure.get("children")
    if not isinstance(children, list):
        raise NexusStructureError(f"{source}: needs a 'children' list at the top level")
    return nexus_structure


def write_nexus(path: str | Path, nexus_structure: dict[str, Any] | str, *, rng_seed: int | None = None,
                start_time_ms: int | None = None, stop_time_ms: int | None = None,
                overwrite: bool = False) -> WriteReport:
    """Write ``path`` from ``nexus_structure``; mdat and simulated stream times span
    ``start_time_ms``..``stop_time_ms`` (default now). Like the file writer, an existing file is
    not replaced unless ``overwrite``."""
    structure = parse_structure(nexus_structure)
    target = Path(path)
    if target.exists() and not overwrite:
        raise NexusWriteError(f"{target}: file exists already (the writer never overwrites)")
    start, stop = _times(start_time_ms, stop_time_ms)
    try:
        with h5py.File(target, "w") as h5:
            report = _Writer(h5, structure, start, stop, rng_seed, target).run()
    except OSError as exc:
        raise NexusWriteError(f"{target}: cannot write: {exc}") from None
    except NexusStructureError:
        target.unlink(missing_ok=True)  # never leave a half-written file behind a rejected structure
        raise
    return report


def check_structure(nexus_structure: dict[str, Any] | str, source: str = "nexus_structure") -> WriteReport:
    """Write the structure to an in-memory HDF5 file: the same checks as ``write_nexus``, no file."""
    structure = parse_structure(nexus_structure, source)
    now = int(time.time() * 1000)
    with h5py.File(f"sfi-check-{id(structure)}.nxs", "w", driver="core", backing_store=False) as h5:
        try:
            return _Writer(h5, structure, now, now, 0, None).run()
        except NexusStructureError as exc:
            raise NexusStructureError(f"{source}: {exc}") from None


def unknown_stream_modules(nexus_structure: dict[str, Any] | str) -> list[str]:
    """Modules with a ``topic`` or ``source`` that kafka-to-nexus has no writer module for (e.g. hs01).

    The writer rejects a job naming one (answ 500, no file): callers simulating it do the same.
    """
    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            config = node.get("config")
            module = node.get("module")
            if isinstance(module, str) and isinstance(config, dict) and ("topic" in config or "source" in config) \
                    and module not in KNOWN_MODULES and module not in found:
                found.append(module)
            visit(node.get("children"))
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(parse_structure(nexus_structure))
    return found


def _times(start: int | None, stop: int | None) -> tuple[int, int]:
    if start is None:
        start = int(time.time() * 1000)
    if stop is None:
        stop = start
    return int(start), max(int(stop), int(start))


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _numpy_dtype(name: Any, where: str) -> str | None:
    try:
        return numpy_dtype(name)
    except ValueError as exc:
        raise NexusStructureError(f"{where}: {exc}") from None


def _is_text(values: Any) -> bool:
    if isinstance(values, str):
        return True
    return isinstance(values, list) and bool(values) and all(_is_text(v) for v in values)


def to_array(values: Any, type_name: Any, where: str) -> Any:
    """A structure value with its kafka-to-nexus type as what h5py stores: strings become UTF-8
    variable-length strings (as the writer stores them); numbers get the named type; numbers given
    as text (placeholders) are parsed."""
    if values is None:
        raise NexusStructureError(f"{where}: has no 'values'")
    if type_name == "string" or (type_name is None and _is_text(values)):
        if isinstance(values, list):
            return np.array([v if isinstance(v, str) else json.dumps(v) for v in _flat(values)],
                            dtype=STRING).reshape(np.shape(values))
        return values if isinstance(values, str) else json.dumps(values)
    # kafka-to-nexus stores a dataset without a type as double (also whole numbers).
    dtype = _numpy_dtype(type_name, where) if type_name is not None else "float64"
    try:
        array = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise NexusStructureError(f"{where}: values do not fit type {type_name or 'number'}: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise NexusStructureError(f"{where}: values must be numbers or strings, not {_kind(values)}")
    return array


def _flat(values: Any) -> list[Any]:
    if isinstance(values, list):
        return [x for v in values for x in _flat(v)]
    return [values]


class _Writer:
    """One pass over the structure; links are made at the end, when their targets exist."""

    def __init__(self, h5: h5py.File, structure: dict[str, Any], start_ms: int, stop_ms: int,
                 rng_seed: int | None, path: Path | None) -> None:
        self.h5 = h5
        self.structure = structure
        self.start_ns = start_ms * 1_000_000
        self.stop_ns = stop_ms * 1_000_000
        self.start_ms, self.stop_ms = start_ms, stop_ms
        self.streams = StreamData(np.random.default_rng(rng_seed), self.start_ns, self.stop_ns)
        self.report = WriteReport(path)
        self.modules: Counter[str] = Counter()
        self.links: list[tuple[h5py.Group, str, str, str]] = []

    def run(self) -> WriteReport:
        root = self.h5["/"]
        # kafka-to-nexus: the path it opened (<hdf-output-prefix>/<filename>), not the bare name
        root.attrs["file_name"] = str(self.report.path or "")
        root.attrs["file_time"] = iso_ms(self.start_ms)
        root.attrs["creator"] = CREATOR
        root.attrs["HDF5_Version"] = h5py.version.hdf5_version
        self._attributes(root, self.structure.get("attributes"), "/")
        self._children(root, self.structure["children"], "")
        for group, name, source, where in self.links:
            self._link(group, name, source, where)
        self.report.modules = dict(self.modules)
        self.report.datasets += self.streams.datasets
        return self.report

    # -- structure -----------------------------------------------------------------------------
    def _children(self, group: h5py.Group, children: Any, path: str) -> None:
        if children is None:
            return
        if not isinstance(children, list):
            raise NexusStructureError(f"{path or '/'}: 'children' must be a list, not {_kind(children)}")
        for index, node in enumerate(children):
            self._node(group, node, path, index)

    def _node(self, group: h5py.Group, node: Any, path: str, index: int) -> None:
        where = f"{path or '/'} child #{index + 1}"
        if not isinstance(node, dict):
            raise NexusStructureError(f"{where}: must be an object, not {_kind(node)}")
        module, kind = node.get("module"), node.get("type")
        if module is not None:
            config = node.get("config", {})
            if not isinstance(config, dict):
                raise NexusStructureError(f"{where} ({module}): 'config' must be an object")
            attributes = node.get("attributes", config.get("attributes"))
            self._module(group, str(module), config, attributes, path, where)
        elif kind == "group":
            name = self._name(node.get("name"), where)
            if name in group:
                raise NexusStructureError(f"{path}/{name}: defined twice")
            child = group.create_group(name)
            self.report.groups += 1
            self._attributes(child, node.get("attributes"), f"{path}/{name}")
            self._children(child, node.get("children"), f"{path}/{name}")
        elif kind == "stream":
            # kafka-to-nexus no longer reads this form: it writes nothing for it, and neither does sfi.
            self.report.warnings.append(f"{where}: old {{'type': 'stream'}} form, ignored as kafka-to-nexus does")
        elif kind == "dataset":  # older static form: {"type": "dataset", "name", "values", "dataset": {"type"}}
            spec: dict[str, Any] = node["dataset"] if isinstance(node.get("dataset"), dict) else {}
            config = {"name": node.get("name"), "values": node.get("values"), "type": spec.get("type")}
            self._module(group, "dataset", config, node.get("attributes"), path, where)
        elif kind == "link":
            config = {"name": node.get("name"), "source": node.get("target", node.get("source"))}
            self._module(group, "link", config, None, path, where)
        else:
            raise NexusStructureError(f"{where}: needs 'module' (with 'config') or 'type' group/stream/dataset/link")

    def _name(self, name: Any, where: str) -> str:
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise NexusStructureError(f"{where}: needs a 'name' (non-empty, no '/'), got {name!r}")
        return name

    def _attributes(self, obj: h5py.Group | h5py.Dataset, attributes: Any, where: str) -> None:
        if attributes is None:
            return
        if isinstance(attributes, dict):
            items = [(str(k), v, None) for k, v in attributes.items()]
        elif isinstance(attributes, list):
            items = []
            for attr in attributes:
                if not isinstance(attr, dict) or not isinstance(attr.get("name"), str):
                    raise NexusStructureError(f"{where}: attribute {attr!r} needs a 'name' and 'values'")
                items.append((attr["name"], attr.get("values"), attr.get("type", attr.get("dtype"))))
        else:
            raise NexusStructureError(f"{where}: 'attributes' must be a list or an object, not {_kind(attributes)}")
        for name, values, type_name in items:
            obj.attrs[name] = to_array(values, type_name, f"{where} attribute {name}")

    # -- modules -------------------------------------------------------------------------------
    def _module(self, group: h5py.Group, module: str, config: dict[str, Any], attributes: Any,
                path: str, where: str) -> None:
        where = f"{where} ({module})"
        if module == "dataset":
            name = self._name(config.get("name"), where)
            self._free(group, name, f"{path}/{name}")
            value = to_array(config.get("values"), config.get("type", config.get("dtype")), f"{path}/{name}")
            dataset = group.create_dataset(name, data=value, dtype=STRING if isinstance(value, str) else None)
            self.report.datasets += 1
            self._attributes(dataset, attributes, f"{path}/{name}")
        elif module == "link":
            name = self._name(config.get("name"), where)
            source = config.get("source", config.get("target"))
            if not isinstance(source, str) or not source:
                raise NexusStructureError(f"{path}/{name}: a link needs a 'source' path")
            self.links.append((group, name, source, f"{path}/{name}"))
        elif module == "mdat":
            self._mdat(group, config, path, where)
        elif module in STREAMS:
            chunk = config.get("chunk_size")
            configured = chunk if isinstance(chunk, int) and not isinstance(chunk, bool) and chunk > 0 else None
            if module in ARRAY_MODULES:
                self.streams.chunk_rows, self.streams.chunk_elements = DEFAULT_CHUNK_ROWS, configured or CHUNK_ELEMENTS
            else:
                self.streams.chunk_rows = configured or CHUNK_ROWS.get(module, DEFAULT_CHUNK_ROWS)
                self.streams.chunk_elements = None
            try:
                STREAMS[module](self.streams, group, config)
            except (ValueError, TypeError) as exc:
                raise NexusStructureError(f"{path or '/'} ({module}): {exc}") from None
            # The writer tags the group it writes a stream into with where the data came from.
            for key, value in (("topic", config.get("topic")), ("source", config.get("source")),
                               ("writer_module", module)):
                if isinstance(value, str):
                    group.attrs[key] = value
            if attributes is not None:
                self._attributes(group, attributes, path or "/")
        else:
            self.report.warnings.append(f"{where}: unknown writer module, skipped")
            return
        self.modules[module] += 1

    def _free(self, group: h5py.Group, name: str, where: str) -> None:
        if name in group:
            raise NexusStructureError(f"{where}: defined twice")

    def _mdat(self, group: h5py.Group, config: dict[str, Any], path: str, where: str) -> None:
        items = config.get("items", ["start_time", "end_time"])
        values = {"start_time": iso_ms(self.start_ms), "end_time": iso_ms(self.stop_ms)}
        if not isinstance(items, list):
            raise NexusStructureError(f"{where}: 'items' must be a list")
        for item in items:
            if item not in values:
                self.report.warnings.append(f"{where}: unknown mdat item {item!r}, skipped")
                continue
            self._free(group, item, f"{path}/{item}")
            # kafka-to-nexus writes these as ASCII strings (real files: start_time/end_time ascii, the rest UTF-8)
            group.create_dataset(item, data=values[item].encode("ascii"), dtype=ASCII)
            self.report.datasets += 1

    def _link(self, group: h5py.Group, name: str, source: str, where: str) -> None:
        parent = group.name or "/"
        target = posixpath.normpath(source if source.startswith("/") else posixpath.join(parent, source))
        if target.startswith("//"):
            target = target[1:]
        if name in group:
            raise NexusStructureError(f"{where}: defined twice")
        if self.h5.get(target) is None:
            self.report.warnings.append(f"{where}: link target {target} does not exist, link not made")
            return
        group[name] = self.h5[target]  # kafka-to-nexus makes hard links
        self.report.links += 1
