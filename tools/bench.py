"""clsp benchmarks: each entry measures clsp against a baseline side by side, in one run,
and prints the ratio (these machines are noisy, so absolute times alone mean little).

    python tools/bench.py            # every benchmark
    python tools/bench.py NAME ...   # some of them
    python tools/bench.py --list

Each benchmark lives in tools/benchmarks/<area>.py as a function registered in BENCHMARKS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# name -> "module:function" inside tools/benchmarks
BENCHMARKS: dict[str, str] = {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(BENCHMARKS))
        return
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    for name in args.names or list(BENCHMARKS):
        module, func = BENCHMARKS[name].split(":")
        fn = getattr(importlib.import_module(f"benchmarks.{module}"), func)
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        fn()
        print(f"   ({time.perf_counter() - start:.1f}s)\n", flush=True)


if __name__ == "__main__":
    main()
