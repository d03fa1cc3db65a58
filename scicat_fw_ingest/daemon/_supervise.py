"""Run ``sfi listen`` in a child process and restart it when it crashes, with one log line.

Why: librdkafka (confluent-kafka 2.x) dies of SIGSEGV about half a second after a topic it consumes is
deleted on some brokers (reproduced against Tansu with a bare ``Consumer``: a Fetch v16 answer "unknown
topic" makes librdkafka look a NULL topic name up in its metadata cache). No librdkafka setting avoids it
(``topic.metadata.refresh.interval.ms``, ``broker.version.fallback``, list or ``^regex`` subscriptions all
crash), and a signal in a librdkafka thread cannot be caught in the process it kills. A small parent can:
it sees the child die of a signal, says so in one line and starts it again. Nothing is lost by a restart:
offsets are committed only after an outcome is durably recorded, so the new child resumes where the dead
one stopped (a deleted topic is then simply absent: librdkafka reports it and consumes the rest).

The parent imports nothing heavy and forwards SIGTERM/SIGINT/SIGHUP once to the child, then exits with the
child's code. The child runs in its own process group (a terminal's Ctrl-C reaches the parent only, which
forwards it once) and is killed if the parent dies (``PR_SET_PDEATHSIG``), so a SIGKILLed daemon leaves no
orphan. Too many crashes in a row (``MAX_CRASHES`` within ``CRASH_WINDOW`` seconds) end the parent with
exit code 70 and a line saying why, for systemd's ``Restart=on-failure`` to take over.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from types import FrameType

#: Set in the child's environment: the child runs the listener itself. Not ``SFI_*``: no config key.
CHILD_MARK = "_SFI_LISTEN_SUPERVISED"
MAX_CRASHES = 5
CRASH_WINDOW = 600.0
#: Exit code when the parent gives up (EX_SOFTWARE).
GIVE_UP_CODE = 70
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1

log = logging.getLogger("sfi.listen")


def is_child() -> bool:
    return os.environ.get(CHILD_MARK) == "1"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: an orphan stops on its own when its stop signal comes
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def supervise(cmd: list[str] | None = None, *, restart_delay: float = 1.0) -> int:
    """Run ``cmd`` (default: this very ``sfi`` command line) until it ends on its own; the code to exit with."""
    cmd = cmd or [sys.executable, "-m", "scicat_fw_ingest", *sys.argv[1:]]
    env = {**os.environ, CHILD_MARK: "1"}
    stopping: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        if not stopping:
            stopping.append(signum)
            if child is not None and child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    crashes: deque[float] = deque()
    try:
        while True:
            # preexec_fn is safe here: the parent runs no threads (it imported nothing that starts one).
            child = subprocess.Popen(cmd, env=env, preexec_fn=_die_with_parent, process_group=0)
            if stopping:  # a stop signal came while starting: pass it on
                child.send_signal(stopping[0])
            code = _wait(child)
            if code >= 0 or stopping:
                return code if code >= 0 else 128 - code
            name = _signal_name(-code)
            now = time.monotonic()
            crashes.append(now)
            while crashes and now - crashes[0] > CRASH_WINDOW:
                crashes.popleft()
            if len(crashes) >= MAX_CRASHES:
                log.error("the listener process died of %s %d times in %.0f min: giving up (exit %d); "
                          "a service manager restarts sfi listen (examples/sfi-listen.service: Restart=on-failure)",
                          name, len(crashes), CRASH_WINDOW / 60, GIVE_UP_CODE)
                return GIVE_UP_CODE
            log.error("the listener process died of %s (%s); restarting it: offsets and outcomes are durable, "
                      "nothing is lost", name, _why(-code))
            deadline = time.monotonic() + restart_delay
            while not stopping and time.monotonic() < deadline:
                time.sleep(0.05)
            if stopping:
                return 128 + stopping[0]
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _why(signum: int) -> str:
    if signum == signal.SIGKILL:
        return "killed from outside: the kernel's out-of-memory killer or an operator"
    return "a crash in native code: librdkafka does this when a consumed topic is deleted"


def _wait(child: subprocess.Popen[bytes]) -> int:
    while True:
        try:
            return child.wait()
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for clarity on odd platforms
            continue
