"""clsp benchmarks: each entry measures clsp against a baseline side by side, in one run,
and prints the ratio (these machines are noisy, so absolute times alone mean little).

    python tools/bench.py            # every benchmark
    python tools/bench.py NAME ...   # some of them
    python tools/bench.py --list

Each benchmark is a function in tools/benchmarks/<area>.py, listed in that module's
`BENCHMARKS = {"name": function}`; this runner collects them all.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))



def collect() -> dict[str, str]:
    """name -> module for every benchmark under tools/benchmarks (modules imported lazily)."""
    import benchmarks

    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(benchmarks.__path__):
        if info.name == "common":
            continue
        module = importlib.import_module(f"benchmarks.{info.name}")
        for name in getattr(module, "BENCHMARKS", {}):
            found[name] = info.name
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args(argv)
    registry = collect()
    if args.list:
        print("\n".join(registry))
        return
    unknown = [n for n in args.names if n not in registry]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(registry)}")
    for name in args.names or list(registry):
        fn = importlib.import_module(f"benchmarks.{registry[name]}").BENCHMARKS[name]
        print(f"== {name}", flush=True)
        start = time.perf_counter()
        fn()
        print(f"   ({time.perf_counter() - start:.1f}s)\n", flush=True)


if __name__ == "__main__":
    main()
