"""The typer application object and the one place that shapes how every command looks and loads.

Why lazy: importing every command module for any command loaded h5py, numpy, confluent-kafka and
pyscicat for ``sfi --help`` (~370 ms). ``COMMANDS`` names each command's module and one-line
summary; a command's module is imported only when that command runs (or its own ``--help`` is
asked for), and ``sfi --help`` lists the summaries from the table without importing anything.

Why central help formatting: typer prints a type marker per option (``<bool>``, ``<list[str]>``),
``{paths}`` in usage lines and defaults in its own style next to ours. Here options show no type
(choices excepted), arguments are upper-case, every default reads ``(default: X)`` and each
command's help ends with the real examples from ``EXAMPLES``. docs/configuration.md lists the
short options, which mean the same in every command (``SHORT_OPTIONS``).
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeAlias, cast, get_args, get_origin

import typer
from typer import BadParameter, Context
from typer import core as typer_core
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption
from typer.exceptions import Abort, Exit
from typer.main import get_command_from_info, get_group_from_info


def _base_named(cls: type, name: str) -> type:
    """A base class of a public typer class, by name: typer exposes click's exception bases only privately."""
    return next(base for base in cls.__mro__ if base.__name__ == name)


#: click's Context and Command as typer vendors them: typer's public classes take and return these, but typer
#: names them only under its private ``typer._click``, which sfi does not import; Any stands for them in annotations
#: (``typer.Context`` is a subclass, too narrow for the parameters of an override).
ClickContext: TypeAlias = Any
ClickCommand: TypeAlias = Any


class _ClickError(Protocol):
    """What sfi reads of click's ``ClickException`` (typer vendors the class privately)."""

    exit_code: int

    def format_message(self) -> str: ...


#: click's exception bases as typer vendors them (reached through the public ``typer.BadParameter``)
_ClickException: type[Exception] = _base_named(BadParameter, "ClickException")
_UsageError: type[Exception] = _base_named(BadParameter, "UsageError")
#: typer's per-parameter converter base (typer >= 0.29 converts through it; see "parameter conversion" below)
_RuntimeParam: Any = getattr(typer_core, "RuntimeParam", object)

#: command -> (module under scicat_fw_ingest.cli, one-line summary for ``sfi --help``).
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest-file": ("ingest_file", "Ingest finished NeXus files into SciCat as raw datasets with their file list."),
    "listen": ("listen", "Consume file-writer channels and ingest every finished file into SciCat, exactly once."),
    "failures": ("listen", "List what the listener could not process: failed and queued files, bad messages."),
    "retry": ("listen", "Re-drive failed files: back into the retry queue, or ingest them now."),
    "decode": ("decode", "Decode file-writer (and any other ESS flatbuffer) messages."),
    "list-status": ("list_status", "Show the file writers (workers), their jobs and the commands sent to them."),
    "produce-test": ("produce_test", "Simulate file-writer jobs: write NeXus files and publish their messages."),
    "forward-runinfo": ("forward_runinfo", "Enrich ISIS run starts with the ISIS NeXus structure and forward them."),
    "preview": ("preview", "Draw the preview picture sfi attaches to a file's dataset (the SciCat thumbnail)."),
    "push-catalogue": ("push_catalogue", "Push every stored dataset and its datablock to SciCat, idempotently."),
    "watch": ("watch", "Watch folders and ingest each settled NeXus file exactly once (writers without wrdn)."),
    "profile": ("profile", "Mapping profiles: convert scicat-ingestor schemas (sfi profile import)."),
    "scicat": ("scicat", "SciCat connection tools: sfi scicat check (login, token expiry, rights)."),
    "config": ("config", "Show the effective configuration (secrets as ***); --check validates it."),
}

#: Real invocations shown at the end of each command's --help.
EXAMPLES: dict[str, list[str]] = {
    "ingest-file": ["sfi ingest-file /data/dream/2024/*.nxs --checksum blake2b",
                    "sfi -c /etc/sfi/sfi.toml ingest-file /mnt/ess-data/dream -j 8",
                    "sfi ingest-file run_0001.nxs --dry-run --preview-dir /tmp/previews"],
    "listen": ["sfi -c /etc/sfi/sfi.toml listen",
               "sfi listen -b kafka:9092 -t dream_filewriter --scicat-url https://scicat/api/v3",
               "sfi listen -t '^.*_filewriter$' --catalogue-dir /tmp/cat --exit-when-idle 60"],
    "failures": ["sfi failures --state-dir /var/lib/sfi", "sfi failures --json | jq .error"],
    "retry": ["sfi retry --state-dir /var/lib/sfi", "sfi retry /ess/data/dream/run_0001.nxs --now"],
    "decode": ["sfi decode message.bin", "sfi decode -b kafka:9092 -t dream_filewriter --last 5",
               "sfi decode - --json < message.bin"],
    "list-status": ["sfi list-status -b kafka:9092 -t dream_filewriter_status",
                    "sfi list-status -t dream_filewriter_status --follow",
                    "sfi list-status -t dream_filewriter_status --json --duration 10"],
    "produce-test": ["sfi produce-test -b localhost:9092 -o /tmp/nexus -n 3",
                     "sfi produce-test -b localhost:9092 -o /tmp/nexus --fail 1 --json"],
    "forward-runinfo": ["sfi forward-runinfo -b kafka:9092 -i LOQ,ZOOM",
                        "sfi -c /etc/sfi/sfi.toml forward-runinfo --once"],
    "preview": ["sfi preview /data/loq/LOQ49886.nxs -o loq.png",
                "sfi preview /data/dream/2026/*.nxs -o /tmp/previews",
                "sfi preview run_0001.nxs --explain"],
    "push-catalogue": ["sfi push-catalogue /var/lib/sfi/catalogue --scicat-url https://scicat.example/api/v3",
                       "sfi push-catalogue /var/lib/sfi/catalogue --dry-run"],
    "config": ["sfi -c /etc/sfi/sfi.toml config", "sfi -c /etc/sfi/sfi.toml config --check"],
    "profile": ["sfi profile import ../schemas/coda.imsc.yml -o /etc/sfi/profiles",
                "sfi -c /etc/sfi/sfi.toml ingest-file run.nxs --explain   # then see which profile a file gets"],
    "scicat": ["sfi -c /etc/sfi/sfi.toml scicat check",
               "SFI_SCICAT_URL=https://scicat.example/api/v3 SFI_SCICAT_TOKEN=... sfi scicat check"],
    "scicat check": ["sfi -c /etc/sfi/sfi.toml scicat check",
                     "SFI_SCICAT_URL=https://scicat.example/api/v3 SFI_SCICAT_TOKEN=... sfi scicat check"],
    "profile import": ["sfi profile import ../schemas/coda.imsc.yml -o /etc/sfi/profiles",
                       "sfi profile import schemas/*.imsc.yml -o profiles --force"],
    "watch": ["sfi watch /archive/musr --state-dir /var/lib/sfi",
              "sfi watch /archive/musr -b kafka:9092 -t MUSR_runInfo --settle 10",
              "sfi watch /archive/musr --catalogue-dir /tmp/cat --poll"],
}

#: Short options: one meaning each, in every command that has them.
SHORT_OPTIONS: dict[str, str] = {
    "-b": "--broker", "-c": "--config", "-f": "--follow", "-g": "--group", "-h": "--help", "-i": "--instruments",
    "-j": "--workers", "-n": "--count", "-o": "--output-dir", "-p": "--partition", "-q": "--quiet",
    "-t": "--topic", "-v": "--verbose",
}

_DEFAULT_IN_TEXT = re.compile(r"\(default (?!:)")


class LazyGroup(TyperGroup):
    """A typer group that imports a command's module only when that command is used."""

    def list_commands(self, ctx: ClickContext) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: ClickContext, cmd_name: str) -> ClickCommand | None:
        if cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        if cmd_name not in self.commands:
            self.commands[cmd_name] = _build(cmd_name)
        return self.commands[cmd_name]

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        """As typer's, but a usage error is one line (typer draws a box) in every command."""
        import sys

        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False,
                              windows_expand_args=windows_expand_args, **extra)
        except _ClickException as raised:
            exc = cast(_ClickError, raised)
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else (prog_name or "sfi")
            hint = f" (see {where} --help)" if isinstance(exc, _UsageError) else ""
            message = exc.format_message().strip().rstrip(".")
            if message:  # empty: no arguments, and the help was printed
                sys.stderr.write(f"{where}: error: {message}{hint}\n")
            rv = exc.exit_code
        except Abort:
            rv = 130
        if rv == 130:  # interrupted: a second Ctrl-C while Python shuts down (joins threads) ends it at once
            import signal

            signal.signal(signal.SIGINT, signal.SIG_DFL)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `sfi ... | head`: the reader has all it wanted; typer would exit 1
            import os
            import sys

            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            raise Exit(0) from None

    def format_help(self, ctx: ClickContext, formatter: Any) -> None:
        """``sfi --help`` drawn here: typer's renderer imports a Markdown parser (~50 ms) it does not need."""
        from rich import box
        from rich.console import Console
        from rich.padding import Padding
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        console = Console(highlight=False)
        console.print(Text.assemble("\n ", ("Usage: ", "yellow"), ("sfi [OPTIONS] COMMAND [ARGS]...", "bold"), "\n"))
        console.print(Padding(Text(self.help or ""), (0, 1, 1, 1)))
        options = Table.grid(padding=(0, 2), expand=True)
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            longs = ", ".join(o for o in param.opts if o.startswith("--"))
            shorts = ", ".join(o for o in param.opts if not o.startswith("--"))
            kind = _option_type(param, ctx) if isinstance(param, TyperOption) else None
            options.add_row(Text(longs, "bold cyan"), Text(shorts, "bold green"), Text(kind or "", "yellow"),
                            Text(getattr(param, "help", None) or record[1] or ""))
        console.print(Panel(options, title="Options", title_align="left", box=box.ROUNDED, border_style="dim"))
        commands = Table.grid(padding=(0, 2), expand=True)
        for name, (_, summary) in COMMANDS.items():
            commands.add_row(Text(name, "bold cyan"), Text(summary))
        console.print(Panel(commands, title="Commands", title_align="left", box=box.ROUNDED, border_style="dim"))

    def resolve_command(self, ctx: ClickContext, args: list[str]) -> tuple[str | None, ClickCommand | None,
                                                                           list[str]]:
        for name in COMMANDS:  # so that typer's "Did you mean ...?" knows every name
            self.commands.setdefault(name, _Placeholder(name=name))
        for name, command in list(self.commands.items()):
            if isinstance(command, _Placeholder):
                del self.commands[name]
        return super().resolve_command(ctx, args)


class _Placeholder(TyperCommand):
    """Stands for a command not yet imported (only while a command name is being resolved)."""


def _build(name: str) -> ClickCommand:
    importlib.import_module(f"{__package__}.{COMMANDS[name][0]}")
    for info in app.registered_commands:
        if info.name == name:
            command = get_command_from_info(info, pretty_exceptions_short=app.pretty_exceptions_short,
                                            rich_markup_mode=app.rich_markup_mode)
            _polish(command, name)
            return command
    for group in app.registered_groups:  # a command with subcommands (sfi profile import, sfi scicat check)
        if group.name == name:
            built = get_group_from_info(group, pretty_exceptions_short=app.pretty_exceptions_short,
                                        suggest_commands=True,
                                        rich_markup_mode=app.rich_markup_mode)
            for sub_name, sub in built.commands.items():
                _polish(sub, f"{name} {sub_name}")
            _polish(built, name)
            return built
    raise LookupError(f"command {name} is listed in COMMANDS but its module did not register it")


def _polish(command: ClickCommand, name: str) -> None:
    """One default style, and the examples at the end of the help."""
    for param in command.params:
        if not isinstance(param, TyperOption) or not param.help:
            continue
        param.help = _DEFAULT_IN_TEXT.sub("(default: ", param.help)
        default = param.default
        if (param.show_default and not param.is_flag and default not in (None, False, "", [], ())
                and "default" not in param.help):
            param.help = f"{param.help} (default: {default.value if hasattr(default, 'value') else default})"
        param.show_default = False
    examples = EXAMPLES.get(name)
    if examples:
        command.epilog = "[bold]Examples:[/]\n" + "\n".join(f"  [cyan]{line}[/]" for line in examples)


# -- help without type markers ------------------------------------------------------------------------
def _option_type(self: TyperOption, ctx: ClickContext) -> str | None:
    if self.is_flag or self.count:
        return None
    desc = self.type_descriptor
    choices = desc.choices if desc.is_choice else None
    if choices:
        return "|".join(str(getattr(c, "value", c)) for c in choices)
    if desc.is_path:
        return "PATH"
    kind = desc.annotation
    return "N" if kind in (int, float) else "TEXT"


def _no_type(self: Any, ctx: ClickContext) -> str | None:
    return None


def _usage_name(self: TyperArgument) -> str:
    name = (self.metavar or self.name or "").upper().replace("_", "-")
    name = name if self.required else f"[{name}]"
    return f"{name}..." if self.nargs != 1 else name


# -- parameter conversion without pydantic ------------------------------------------------------------
# typer 0.29 converts every parameter through a pydantic TypeAdapter: importing pydantic and building
# the adapters costs ~100 ms at each start. sfi's parameters are plain (text, numbers, paths, flags,
# lists of them): those are converted here; anything else (choices, enums) still goes through typer.
# Only where typer has that seam (>= 0.29); elsewhere typer converts as it always did.
_typer_build_runtime_param: Callable[[Any], Any] | None = getattr(typer_core, "build_runtime_param", None)


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "y", "on", "t"):
        return True
    if text in ("0", "false", "no", "n", "off", "f"):
        return False
    raise ValueError(value)


_PLAIN: dict[Any, tuple[Any, str]] = {str: (str, "text"), int: (int, "integer"), float: (float, "number"),
                                      Path: (Path, "path"), bool: (_to_bool, "boolean")}


@dataclass(frozen=True)
class _PlainParam(_RuntimeParam):  # type: ignore[misc]  # typer.core names RuntimeParam without exporting it
    convert: Any = str
    kind: str = "text"
    many: bool = False
    low: Any = None
    high: Any = None

    def _coerce_value(self, value: Any, param: Any, ctx: Context) -> Any:
        if self.many:
            return [self._one(item, param, ctx) for item in value]
        return self._one(value, param, ctx)

    def _one(self, value: Any, param: Any, ctx: Context) -> Any:
        try:
            result = self.convert(value)
        except (TypeError, ValueError):
            raise BadParameter(f"'{value}' is not a valid {self.kind}", ctx=ctx, param=param) from None
        if (self.low is not None and result < self.low) or (self.high is not None and result > self.high):
            bounds = " and ".join(b for b in (f">= {self.low}" if self.low is not None else "",
                                              f"<= {self.high}" if self.high is not None else "") if b)
            raise BadParameter(f"{value} must be {bounds}", ctx=ctx, param=param)
        return result


def _build_runtime_param(descriptor: Any) -> Any:
    info = descriptor.parameter_info
    annotation, many = descriptor.annotation, False
    if get_origin(annotation) is list and len(get_args(annotation)) == 1:
        annotation, many = get_args(annotation)[0], True
    plain = _PLAIN.get(annotation)
    if _typer_build_runtime_param is None:  # not installed then (see below); typer converts as it always did
        raise LookupError("typer has no build_runtime_param")
    if (plain is None or descriptor.file_annotation is not None or descriptor.is_choice
            or getattr(info, "parser", None) is not None or getattr(info, "click_type", None) is not None):
        return _typer_build_runtime_param(descriptor)
    return _PlainParam(parameter_info=info, annotation=descriptor.annotation, convert=plain[0], kind=plain[1],
                       many=many, low=getattr(info, "min", None), high=getattr(info, "max", None))


if _typer_build_runtime_param is not None and _RuntimeParam is not object:
    typer_core.build_runtime_param = _build_runtime_param
TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
TyperArgument.display_type_rich = _no_type  # type: ignore[method-assign]
TyperOption._get_number_range_help_str = lambda self: None  # type: ignore[method-assign]
TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]
TyperArgument._rich_display_name = lambda self: _usage_name(self).strip("[]").replace("]...", "...")  # type: ignore[method-assign]


app = typer.Typer(
    name="sfi",
    cls=LazyGroup,
    help="sfi — ingest NeXus files finished by the ESS/ISIS file writer into SciCat, and inspect its Kafka channels.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
