"""`python -m clsp.train recipe=NAME [group=choice] [key=value ...]`: train a dual encoder.

    python -m clsp.train recipe=demo                       # offline, CPU, minutes
    python -m clsp.train recipe=fusionaudio data.train='/data/fa/train-{000000..000511}.tar' trainer.devices=8
    python -m clsp.train recipe=demo resume=latest         # continue the newest demo run
    python -m clsp.train recipe=demo resume=runs/demo/<run>/checkpoints/best.ckpt   # or any checkpoint
    python -m clsp.train recipe=demo --print-config        # the resolved config (YAML), then exit
    python -m clsp.train --recipes                         # list recipes, one line on each
    python -m clsp.train recipe=demo --verbose             # Lightning's own output too (tips, summaries)
"""

from __future__ import annotations

import os
import sys

import torch
from omegaconf import DictConfig, OmegaConf

from clsp.errors import DEBUG_ENV, ConfigError, entry_point
from clsp.training.compose import available_recipes, compose_config, recipe_descriptions

VERBOSE_FLAG = "--verbose"  # every process reads it: Lightning's launcher and torchrun repeat the command line


def explicit_model_keys(argv: list[str], cfg: DictConfig) -> dict[str, dict]:
    """The `model.<section>.<key>` settings given on the command line, nested, with their composed
    values: what a run with `run.init_from` applies to the model it loads."""
    out: dict[str, dict] = {}
    for item in argv:
        key, sep, _ = item.lstrip("+").partition("=")
        parts = key.split(".")
        if sep and len(parts) >= 3 and parts[0] == "model":
            value = OmegaConf.select(cfg, key)
            out.setdefault(parts[1], {})[".".join(parts[2:])] = OmegaConf.to_container(value) \
                if OmegaConf.is_config(value) else value
    return {section: _nest(values) for section, values in out.items()}


def _nest(flat: dict[str, object]) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        *path, last = key.split(".")
        node = nested
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return nested


@entry_point
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\nrecipes: {', '.join(available_recipes())}")
        print(f"--debug (or {DEBUG_ENV}=1) shows the traceback of a user error too")
        return 0
    if argv and argv[0] == "--recipes":
        descriptions = recipe_descriptions()
        width = max(map(len, descriptions))
        print("\n".join(f"{name:<{width}}  {text}".rstrip() for name, text in descriptions.items()))
        return 0
    print_config = "--print-config" in argv
    verbose = VERBOSE_FLAG in argv
    argv = [a for a in argv if a not in ("--print-config", VERBOSE_FLAG)]
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ConfigError(f"arguments must be key=value overrides, got {' '.join(bad)!r}",
                          "e.g. python -m clsp.train recipe=demo optim.lr=1e-4 (--recipes lists the recipes)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Types, ranges and cross-section rules checked here, before any model or data is built.
    cfg = compose_config(argv, allow_missing=print_config)
    if print_config:
        print(OmegaConf.to_yaml(cfg), end="")
        return 0
    accelerator = str(cfg.trainer.accelerator)
    if accelerator in ("gpu", "cuda"):

        if not torch.cuda.is_available():  # else Lightning's traceback, after the run folder is made
            raise ConfigError(f"trainer.accelerator={accelerator} but no CUDA GPU is visible here",
                              "use trainer.accelerator=auto (the CPU here) or cpu, or run where a GPU is visible")
    from clsp.training.console import quiet
    from clsp.training.runner import format_results, train  # Lightning and torch: seconds to import

    quiet(verbose)
    # A DataError (too many bad samples) exits 1 with its line, via entry_point.
    results = train(cfg, model_overrides=explicit_model_keys(argv, cfg))
    if results:
        print(format_results(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
