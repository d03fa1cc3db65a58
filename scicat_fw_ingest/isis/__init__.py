"""ISIS: the static ISIS NeXus structure added to the ICP's run starts, and the forwarder that does it.

``structure`` merges the ICP's streamed structure with the static raw layout (``_template``: a JSON data
file with placeholders, overridable per instrument) into one pl72; ``forward`` is the ``sfi
forward-runinfo`` loop (consume, enrich, produce idempotently, commit after the delivery report).
Pure structure logic is apart from the Kafka loop, so it is tested without a broker.
"""

from __future__ import annotations

from ._template import (
    BUILTIN_TEMPLATE,
    SCALAR_PLACEHOLDERS,
    SPLICE_PLACEHOLDERS,
    fill_template,
    load_template,
    parse_template,
)
from .structure import (
    DETECTOR_EVENTS,
    ENTRY_NAME,
    EnrichError,
    RootFields,
    build_structure,
    enrich_run_start,
    instrument_from_topic,
    merge_children,
    merge_group,
    merge_icp,
    root_fields,
    serialise_enriched,
)

__all__ = [
    "BUILTIN_TEMPLATE", "DETECTOR_EVENTS", "ENTRY_NAME", "SCALAR_PLACEHOLDERS", "SPLICE_PLACEHOLDERS", "EnrichError",
    "RootFields", "build_structure", "enrich_run_start", "fill_template", "instrument_from_topic", "load_template",
    "merge_children", "merge_group", "merge_icp", "parse_template", "root_fields", "serialise_enriched",
]
