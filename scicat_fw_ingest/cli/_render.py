"""Readable rich rendering for people at a terminal: decoded messages, and ids and paths that fit a table.

Tables show ids and paths abbreviated (``abbreviate_id``, ``abbreviate_path``) so that a row fits an
80-column terminal; ``--json`` always carries them in full.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # only for annotations: importing the decoder loads numpy
    from ..messages import Message

def abbreviate_id(value: str | None, keep: int = 8) -> str:
    """'0d5b7e2c…' for a uuid-like id (the part after the last '/' of a prefixed pid); short ids unchanged."""
    if not value:
        return "-"
    tail = value.rsplit("/", 1)[-1]
    return tail if len(tail) <= keep + 1 else tail[:keep] + "…"


def abbreviate_path(path: str, width: int = 40) -> str:
    """The end of ``path`` (file name first), '…/' in front when it had to be cut."""
    if len(path) <= width:
        return path
    parts = path.split("/")
    kept = parts[-1]
    for part in reversed(parts[:-1]):
        if len(part) + len(kept) + 3 > width:
            break
        kept = f"{part}/{kept}"
    return "…/" + kept if len(kept) + 2 <= width else "…" + kept[-(width - 1):]


_COLOURS = {"pl72": "green", "6s4t": "red", "answ": "yellow", "x5f2": "blue", "wrdn": "magenta"}


def summarise_structure(node: Any) -> str:
    """'12 groups, 5 datasets, streams: f144×3 ev44×1' for a nexus_structure."""
    groups = 0
    modules: Counter[str] = Counter()

    def walk(item: Any) -> None:
        nonlocal groups
        if isinstance(item, dict):
            if item.get("type") == "group":
                groups += 1
            module = item.get("module") or (item.get("stream") or {}).get("writer_module")
            if module:
                modules[str(module)] += 1
            for child in item.get("children", []) or []:
                walk(child)
        elif isinstance(item, list):
            for child in item:
                walk(child)

    walk(node)
    parts = [f"{groups} groups"]
    if modules:
        parts.append("modules: " + " ".join(f"{name}×{n}" for name, n in sorted(modules.items())))
    return ", ".join(parts)


def _cell(value: Any, width: int = 400) -> str:
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
        return escape(text if len(text) <= width else text[: width - 1] + "…")
    return escape("" if value is None else str(value)) or "[dim]—[/]"


def render_message(console: Console, message: Message, label: str, meta: dict[str, Any], *, full: bool) -> None:
    data = message.to_jsonable(full=full)
    colour = _COLOURS.get(message.schema, "cyan")
    where = escape(label)
    when = f"  [dim]{escape(str(meta['timestamp']))}[/]" if meta.get("timestamp") else ""
    table = Table(title=f"[bold {colour}]{message.schema}[/] {escape(message.name)}  [dim]{where}[/]{when}",
                  title_justify="left", show_header=False, box=None, padding=(0, 1))
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in data.items():
        if key in ("schema", "json_errors"):
            continue
        if key == "nexus_structure" and isinstance(value, dict) and not full:
            table.add_row(key, f"{escape(summarise_structure(value))} [dim](--full shows it)[/]")
            continue
        problem = message.json_errors.get(key)
        cell = _cell(value, width=10**9 if full else 400)
        table.add_row(key, f"{cell}  [red]({escape(problem)})[/]" if problem else cell)
    console.print(table)
    console.print()
