"""`python -m clsp.train recipe=NAME [group=choice] [key=value ...]`: train a dual encoder.

    python -m clsp.train recipe=demo                       # offline, CPU, minutes
    python -m clsp.train recipe=fusionaudio data.train='/data/fa/train-{000000..000511}.tar' trainer.devices=8
    python -m clsp.train recipe=demo resume=latest         # continue the newest demo run
    python -m clsp.train --recipes                         # list recipes
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from clsp.data.reader import DataError
    from clsp.training.compose import ConfigError, available_recipes, compose_config

    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\nrecipes: {', '.join(available_recipes())}")
        return 0
    if argv and argv[0] == "--recipes":
        print("\n".join(available_recipes()))
        return 0
    bad = [a for a in argv if "=" not in a]
    if bad:
        print(f"error: arguments must be key=value overrides, got {bad}", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        cfg = compose_config(argv)
        from clsp.training.runner import format_results, train

        results = train(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DataError as exc:
        # Too many bad samples: the message names the shard and the main reason.
        print(f"error: {_last_line(exc)}", file=sys.stderr)
        return 1
    if results:
        print(format_results(results), flush=True)
    return 0


def _last_line(exc: Exception) -> str:
    """A DataLoader worker's exception arrives wrapped with its traceback; keep the message."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else type(exc).__name__
    return last.split("DataError: ", 1)[-1]


if __name__ == "__main__":
    sys.exit(main())
