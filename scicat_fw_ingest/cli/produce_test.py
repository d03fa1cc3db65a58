"""``sfi produce-test``: a simulated file writer — real NeXus files and kafka-to-nexus's Kafka sequence.

Only flags and printing live here; the writer is ``simulate.simulate_jobs``. Heavy imports (h5py via
the NeXus writer, confluent_kafka) happen inside the command so that ``sfi --help`` stays fast.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import ConfigError
from ._app import app
from ._common import BrokerOpt, ConfigOpt, JsonOpt, load, stdout, warn


class Layout(StrEnum):
    ess = "ess"
    isis = "isis"


class Failure(StrEnum):
    """How ``--fail`` ends a job (simulate.FAILURES)."""

    start_400 = "start-400"
    start_500 = "start-500"
    write_error = "write-error"


#: Defaults shown in --help; the same values as simulate.DEFAULT_* (kept here to import it lazily).
DEFAULT_POOL_TOPIC = "sfi_pool"
DEFAULT_STATUS_TOPIC = "sfi_writer_status"
DEFAULT_PROPOSAL = "123456"


@app.command("produce-test")
def produce_test_command(
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where the simulated writer writes its "
                                             "files (its hdf-output-prefix); must exist.", show_default=False)],
    broker: BrokerOpt = None,
    count: Annotated[int, typer.Option("--count", "-n", help="How many writing jobs to simulate.")] = 1,
    pool_topic: Annotated[str, typer.Option("--pool-topic", help="The writers' job pool topic.")] = DEFAULT_POOL_TOPIC,
    control_topic: Annotated[str | None, typer.Option("--control-topic", help="One control topic for all jobs "
                                                      "(default: sfi_control_<job id prefix> per job).",
                                                      show_default=False)] = None,
    layout: Annotated[Layout, typer.Option("--layout", help="Default nexus_structure: ESS /entry or ISIS "
                                           "/raw_data_1.")] = Layout.ess,
    nexus_structure: Annotated[Path | None, typer.Option("--nexus-structure", help="Use this nexus_structure JSON "
                                                         "file (placeholders ${...} are filled per job).",
                                                         show_default=False)] = None,
    status_topic: Annotated[str, typer.Option("--status-topic", help="The writer's default command/status "
                                              "topic: idle x5f2 every 2 s, failed starts.")] = DEFAULT_STATUS_TOPIC,
    fail: Annotated[list[Failure] | None, typer.Option("--fail", help="Make one job fail this way (repeatable; "
                                                       "the last jobs fail, in the order given).",
                                                       show_default=False)] = None,
    instrument: Annotated[str | None, typer.Option("--instrument", help="Instrument name (default DUMMY for ess, "
                                                   "LOQ for isis).", show_default=False)] = None,
    proposal: Annotated[str, typer.Option("--proposal", help="Proposal id written as experiment_identifier.")]
    = DEFAULT_PROPOSAL,
    heartbeats: Annotated[int, typer.Option("--heartbeats", help="x5f2 'writing' heartbeats per job.")] = 2,
    stop_now: Annotated[bool, typer.Option("--stop-now", help="Stop each job with a 6s4t 'stop now' (stop time "
                                           "0) instead of its stop time.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for the simulated stream data.",
                                             show_default=False)] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    writer: Annotated[str, typer.Option("--writer", help="kafka-to-nexus, or supermusr: pl72 + 6s4t to "
                                        "--pool-topic, no wrdn, file copied slowly into --archive-dir.")]
    = "kafka-to-nexus",
    archive_dir: Annotated[Path | None, typer.Option("--archive-dir", help="supermusr: the archive directory.",
                                                     show_default=False)] = None,
    copy: Annotated[str, typer.Option("--copy", help="supermusr: MB per file, copy chunk KB, delay s between "
                                      "chunks, pause s half-way.")] = "3,256,0.01,0",
    finish_late: Annotated[str | None, typer.Option("--finish-late", help="Keep writing each file this many "
                                                    "seconds after its wrdn (or LOW-HIGH, drawn per file), then "
                                                    "close and chmod 0440, as kafka-to-nexus really does.",
                                                    show_default=False)] = None,
    no_final_chmod: Annotated[bool, typer.Option("--no-final-chmod", help="Leave finished files writable, like "
                                                 "kafka-to-nexus before eed2958d (May 2025).")] = False,
) -> None:
    """Simulate file-writer jobs: write one NeXus file per job and publish its complete message sequence.

    Per job, as kafka-to-nexus: pl72 to the pool topic; on the control topic the pl72 echo,
    answ(StartJob), x5f2 heartbeats, 6s4t, answ(SetStopTime) and wrdn naming the written file;
    idle x5f2 on the status topic. A failed start is answered on the status topic and writes
    nothing. Exit 0 on success, 1 for Kafka or file errors, 2 for bad options or a bad
    --nexus-structure file.
    """
    from ..nexus.writer import WriteReport
    from ..simulate import JobResult, load_structure_file, simulate_jobs

    failures = [f.value for f in fail or []]
    if count < 1:
        raise ConfigError(f"--count {count}: must be at least 1")
    if len(failures) > count:
        raise ConfigError(f"--fail given {len(failures)} times: at most --count ({count}) jobs can fail")
    if heartbeats < 0:
        raise ConfigError(f"--heartbeats {heartbeats}: must not be negative")
    if control_topic is not None and not control_topic.strip():
        raise ConfigError("--control-topic: must not be empty (the writer rejects a run start without one)")
    if not output_dir.is_dir():
        raise ConfigError(f"--output-dir {output_dir}: does not exist or is not a directory")
    late = None
    if finish_late is not None:
        from ..simulate._finish import parse_late

        try:
            late = parse_late(finish_late)
        except ValueError as exc:
            raise ConfigError(f"--finish-late {exc}") from None
    if (late is not None or no_final_chmod) and writer != "kafka-to-nexus":
        raise ConfigError("--finish-late and --no-final-chmod: only with --writer kafka-to-nexus")
    if writer != "kafka-to-nexus":
        from ._supermusr import produce_cli

        produce_cli(writer, load(config, kafka={"bootstrap.servers": broker}), count, output_dir, archive_dir, copy,
                    topic=pool_topic, instrument=instrument, proposal=proposal, seed=seed, as_json=as_json)
        return
    structure = load_structure_file(nexus_structure) if nexus_structure is not None else None
    cfg = load(config, kafka={"bootstrap.servers": broker})

    warned: set[str] = set()

    def report(result: JobResult, written: WriteReport | None) -> None:
        for line in written.warnings if written is not None else []:
            if line not in warned:  # the same template warns the same way for every job
                warned.add(line)
                warn(f"produce-test: {line}")
        if as_json:
            stdout.file.write(json.dumps(result.to_json()) + "\n")
            stdout.file.flush()

    results = simulate_jobs(cfg, count, output_dir=output_dir, layout=layout.value, pool_topic=pool_topic,
                            control_topic=control_topic, status_topic=status_topic, nexus_structure=structure,
                            fail=failures,
                            instrument=instrument, proposal_id=proposal, heartbeats=heartbeats, rng_seed=seed,
                            late=late, final_chmod=not no_final_chmod, stop_now=stop_now, on_job=report)
    if not as_json:
        _summary(results, pool_topic)


def _summary(results: list[Any], pool_topic: str) -> None:
    table = Table(title=f"{len(results)} simulated job(s), run starts on {pool_topic}", title_justify="left")
    for column in ("job_id", "run", "control topic", "outcome", "file"):
        table.add_column(column, overflow="fold")
    for r in results:
        outcome: Any = f"[red]{r.outcome}[/red]" if r.failed else "[green]done[/green]"
        table.add_row(r.job_id, r.run_name, r.control_topic, outcome, r.file)
    stdout.print(table)
