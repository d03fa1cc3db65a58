"""Soak of issue 18's acceptance: two `sfi listen` as two hosts in one group, kill -9 at random moments — some
during datablock POSTs the server stores late, some during POSTs that never arrive — on the real SciCat
backend (both versions) with an admin and with the non-admin ingestor account. Prints per run:
jobs / datasets / duplicates / mismatches / lost, and the failover times measured.

    python -m bench.soak_failover [--jobs 300] [--partitions 4] [--kills 8] [--versions 5.1.0,4.5.0]
                                  [--accounts admin,ingestor] [--seed 18]
    make soak

Each host has its own state and lock directory and its own fault proxy in front of the shared backend; HDF5
file locking is off. Before a kill the victim's proxy is armed with one of: hold its next datablock POST 16 s
(stored later than the takeover wait: the survivor posts too, its verification repairs the duplicate — an
admin may delete; the non-admin account may not, so for it the hold is 3 s: stored after the client's timeout
but within the takeover wait, the longest a POST is assumed to live), hold 3 s, drop it (never arrives), or
nothing. A killed host comes back after 2 to 6 s (a restarted service), so rebalances happen with work in flight.
``verify_after`` is 20 s here (120 s by default): a verification must come after the late POST has landed.
``SFI_TEST_SCICAT_URL_5_1_0`` / ``_4_5_0`` reuse running backends; else they are started (node + npm needed).
``SFI_TEST_KAFKA`` reuses a broker; else a Tansu broker is started.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

from scicat_fw_ingest.config import load_config
from scicat_fw_ingest.kafka import ensure_topics, make_producer
from scicat_fw_ingest.simulate import job_messages
from scicat_fw_ingest.simulate._finish import LateFinish, finish_late, parse_late
from scicat_fw_ingest.testing.backend import RealBackend, shared_url_variable
from scicat_fw_ingest.testing.broker import TansuBroker
from scicat_fw_ingest.testing.failover import Audit, TwoHosts, wait_exact
from scicat_fw_ingest.testing.listener import make_jobs

_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")


def _arm(site: TwoHosts, name: str, mode: str, user: str) -> None:
    proxy = site[name].proxy
    proxy.clear()
    if mode == "hold-long":
        proxy.hold(16.0 if user == "admin" else 3.0, path_contains="rigdatablocks", method="POST")
    elif mode == "hold-short":
        proxy.hold(3.0, path_contains="rigdatablocks", method="POST")
    elif mode == "drop":
        proxy.drop(path_contains="rigdatablocks", method="POST", after=60.0)


def _taken_over_after(site: TwoHosts, survivor: str, killed_at: float) -> float | None:
    """Seconds from a kill to the survivor's next "taking over" line (log stamps have 1 s resolution)."""
    for line in site[survivor].log().splitlines():
        m = _STAMP.match(line)
        if m and "taking over" in line:
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
            if at >= int(killed_at):
                return at - killed_at
    return None


def run(backend: RealBackend, bootstrap: str, *, user: str, jobs_n: int, partitions: int, kills: int,
        rng: random.Random, workdir: Path, late: LateFinish | None = None) -> tuple[Audit, list[float], float, int]:
    topic = f"soak_{uuid.uuid4().hex[:10]}"
    cfg = load_config(None, env={}, overrides={"kafka": {"bootstrap.servers": bootstrap}})
    site = TwoHosts(workdir, backend, bootstrap, topic, user=user,
                    access_group="ingestor" if user == "ingestor" else None, verify_after=20.0)
    jobs = make_jobs(site.data_dir, jobs_n, topic=topic)
    if late is not None:  # as kafka-to-nexus: the wrdn first, then the final writes, close and chmod 0440
        for job in jobs:
            (site.data_dir / job.filename).chmod(0o640)
    finishing: list[threading.Thread] = []
    ensure_topics(cfg, [topic], partitions=partitions)
    started = time.monotonic()
    failovers: list[float] = []
    site.start("a", "b")
    site.wait_assigned("a", 60)
    site.wait_assigned("b", 60)

    def produce() -> None:  # the jobs arrive over about a minute, as a busy instrument hall's would
        producer = make_producer(cfg)
        spread = 60.0 / max(1, jobs_n)
        for job in jobs:
            for t, value in job_messages(job)[1:]:
                producer.produce(t, value, key=job.job_id.encode())
            producer.poll(0)
            if late is not None:
                producer.flush(10)  # the wrdn is out: the writer finishes the file from now on
                seconds = late.draw(rng)
                finisher = threading.Thread(target=finish_late, args=(site.data_dir / job.filename, seconds),
                                            daemon=True)
                finisher.start()
                finishing.append(finisher)
            time.sleep(spread)
        producer.flush(30)

    feeder = threading.Thread(target=produce, daemon=True)
    feeder.start()
    modes = ["hold-long", "drop", "hold-short", "plain"]
    try:
        for k in range(kills):
            time.sleep(rng.uniform(2.0, 6.0))
            alive = [n for n in ("a", "b") if site[n].alive()]
            for name in ("a", "b"):  # a host killed earlier comes back before the next kill
                if not site[name].alive():
                    site[name].proxy.clear()
                    site.start(name)
                    site.wait_assigned(name, 60)
            victim = rng.choice(alive or ["a"])
            mode = modes[k % len(modes)]
            _arm(site, victim, mode, user)
            deadline = time.monotonic() + 10.0
            rules = site[victim].proxy.rules
            while mode != "plain" and time.monotonic() < deadline and any(r.remaining for r in rules):
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 0.8))
            site[victim].kill()
            killed_at = time.time()
            print(f"  kill -9 host {victim} ({mode}) at {time.monotonic() - started:.0f} s", flush=True)
            survivor = "b" if victim == "a" else "a"
            wait_until = time.monotonic() + 30
            took = None
            while took is None and time.monotonic() < wait_until:
                time.sleep(0.5)
                took = _taken_over_after(site, survivor, killed_at)
            if took is not None:
                failovers.append(took)
        feeder.join()
        for finisher in finishing:
            finisher.join()
        for name in ("a", "b"):
            if not site[name].alive():
                site[name].proxy.clear()
                site.start(name)
        result = wait_exact(backend, jobs, site.data_dir, 240)
    finally:
        site.stop()
    repaired = site.logs().count("identical datablocks: deleted")
    return result, failovers, time.monotonic() - started, repaired


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak_failover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--versions", default="5.1.0,4.5.0")
    parser.add_argument("--accounts", default="admin,ingestor")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--finish-late", default="0.5-3", help="seconds each file is still written after its "
                        "wrdn, as kafka-to-nexus does (LOW-HIGH, or 0: finished before it)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    late = parse_late(args.finish_late) if args.finish_late not in ("0", "") else None
    import os

    broker = None
    bootstrap = os.environ.get("SFI_TEST_KAFKA")
    if not bootstrap:
        broker = TansuBroker().start()
        bootstrap = broker.bootstrap
    started: list[RealBackend] = []
    ok = True
    try:
        for version in args.versions.split(","):
            backend = RealBackend(version)
            url = os.environ.get(shared_url_variable(version))
            if url:
                backend.url, backend.external = url, True
            else:
                backend.start()
                started.append(backend)
            for user in args.accounts.split(","):
                tmp = tempfile.mkdtemp(prefix="sfi-soak-")
                if True:
                    print(f"== SciCat {version}, account {user}: {args.jobs} jobs, {args.partitions} partitions, "
                          f"{args.kills} kill -9, files finished {args.finish_late} s after their wrdn, "
                          "HDF5 locking off", flush=True)
                    result, failovers, took, repaired = run(backend, bootstrap, user=user, jobs_n=args.jobs,
                                                  partitions=args.partitions, kills=args.kills, rng=rng,
                                                  workdir=Path(tmp), late=late)
                    fo = (f"failover (kill -> survivor takes over) {min(failovers):.0f}-{max(failovers):.0f} s "
                          f"over {len(failovers)} kills" if failovers else "failover not observed")
                    print(f"   {result.line()}   ({took:.0f} s; {fo}; duplicates repaired on the way: {repaired})",
                          flush=True)
                    for what in (result.duplicates, result.mismatches, result.stale, result.lost):
                        for item in what[:5]:
                            print(f"     {item}")
                    ok = ok and result.exact
                    if result.exact:
                        shutil.rmtree(tmp, ignore_errors=True)
                    else:
                        print(f"     logs and state kept in {tmp}")
    finally:
        for backend in started:
            backend.stop()
        if broker is not None:
            broker.stop()
    print("soak: " + ("every dataset exactly once" if ok else "NOT MET"), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
