"""Run every ``bench/bench_*.py`` module's ``main()`` in turn; each prints its figures and ratios.

``python -m bench NAME...`` runs only the named ones (``extract``, ``checksum``, ...).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    wanted = [n if n.startswith("bench_") else f"bench_{n}" for n in argv]
    failed = 0
    for name in wanted or names:
        if name not in names:
            print(f"bench: no benchmark '{name}' (have: {', '.join(names)})", file=sys.stderr)
            return 2
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        result = importlib.import_module(f"bench.{name}").main()
        ok = result is None or bool(result)
        failed += not ok
        print(f"== {name}: {'met' if ok else 'NOT MET'} ({time.perf_counter() - started:.1f} s)\n", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
