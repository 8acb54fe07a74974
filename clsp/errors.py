"""The error contract shared by every entry point (`clsp.train`, `eval`, `shards`, `export`, `convert`).

- A user error (bad argument, override, value type or range, missing or foreign file, unreachable
  hub id, unusable table) raises `UserError`: the entry point prints one line
  `error: <what> — <what to do>` on stderr and exits 2.
- A data failure past its limit (`DataFailure`, raised as `clsp.data.skips.DataError`) exits 1
  with its one line.
- Anything else is a bug and keeps its traceback.
- `--debug` on any command line (or `CLSP_DEBUG=1`) prints the traceback of a user error or data
  failure too, above its line.

Library code raises `UserError` (or a subclass) where the cause is the caller's input; an entry point
applies the contract with one decorator, `@entry_point`, on its `main(argv) -> int`, and builds its
argument parser with `ArgumentParser` so that argparse's own complaints follow it as well.
Hand-written rather than argparse's `exit_on_error=False`: that covers only some parse errors on
Python 3.11 (not a missing required argument), and Hydra-style `key=value` commands have no parser.
This module imports nothing from the rest of clsp, so every layer may use it.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

T = TypeVar("T")

EXIT_DATA = 1
EXIT_USER = 2
DEBUG_FLAG = "--debug"
DEBUG_ENV = "CLSP_DEBUG"


class UserError(ValueError):
    """Input the user can fix. `str(exc)` is the one line printed after `error: `."""

    def __init__(self, what: str, todo: str | None = None) -> None:
        self.what = what
        self.todo = todo
        super().__init__(f"{what} — {todo}" if todo else what)

    @classmethod
    def from_exception(cls, exc: BaseException, todo: str | None = None) -> UserError:
        """A library's ValueError / FileNotFoundError about the user's input, as the one line.

        A message that already ends in an instruction ('...; pass --audio-column') keeps it as the
        todo; otherwise `todo` is used.
        """
        text = " ".join(str(exc).split()) or type(exc).__name__
        what, sep, last = text.rpartition("; ")
        if sep and last.split(" ", 1)[0] in _INSTRUCTIONS:
            return cls(what, last)
        return cls(text, todo)


_INSTRUCTIONS = frozenset({"pass", "use", "give", "set", "add", "choose", "run", "convert", "check", "install"})


class ConfigError(UserError):
    """A bad recipe, override or value: reported as one line, before any model is built."""

    def __init__(self, what: str, todo: str | None = None) -> None:
        super().__init__(what, todo or "fix it with a key=value override or in the recipe "
                                       "(`python -m clsp.train --help`)")


class DataFailure(RuntimeError):
    """Too many bad samples: the run stops, and the message says which shard and why."""


def pretrained_error(key: str, name: str, exc: BaseException) -> UserError:
    """The one line for weights or a tokenizer that cannot be loaded from `name` (config key `key`)."""
    if os.path.isdir(name):
        return UserError(f"{key}={name!r}: cannot load it from this folder ({type(exc).__name__})",
                         "point it at a Hugging Face model folder (config.json + weights)")
    offline = any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    why = "not in the local Hugging Face cache and the hub is offline" if offline else \
        "neither a local folder nor a model id the Hugging Face hub could serve"
    return UserError(f"{key}={name!r} cannot be loaded: {why}",
                     f"check the id, or fetch it while online (`hf download {name}`) and rerun; "
                     f"{key}=null starts from random weights")


def load_pretrained(key: str, name: str, load: Callable[[str], T]) -> T:
    """`load(name)` (a transformers `from_pretrained`), its failure turned into the one line naming `key`.

    transformers raises OSError for an id it cannot fetch (offline, unknown, gated) and ValueError
    for a folder that holds no model.
    """
    try:
        return load(name)
    except (OSError, ValueError) as exc:
        raise pretrained_error(key, name, exc) from exc


def one_line(exc: BaseException) -> str:
    """The exception's message on one line.

    An exception raised in a DataLoader worker arrives re-raised with the worker's traceback in
    its message; its last line (`pkg.Class: message`) holds the message.
    """
    text = str(exc).strip() or type(exc).__name__
    if "Traceback (most recent call last)" in text:
        text = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = re.sub(r"^[\w.]+(Error|Failure|Exception): ", "", text.strip())
    return " ".join(text.split())


def debug_requested(argv: Sequence[str]) -> bool:
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def report(exc: BaseException, code: int, debug: bool) -> int:
    """Print `error: <one line>` (after the traceback when debugging) and return the exit code."""
    if debug:
        traceback.print_exception(exc)
    print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
    return code


def entry_point(main: Callable[[list[str]], int]) -> Callable[[Sequence[str] | None], int]:
    """Apply the contract to an entry point's `main(argv) -> int`.

    `--debug` is taken out of argv before `main` sees it; `main(None)` reads sys.argv.
    """

    @functools.wraps(main)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        debug = debug_requested(args)
        try:
            return main([a for a in args if a != DEBUG_FLAG])
        except UserError as exc:
            return report(exc, EXIT_USER, debug)
        except DataFailure as exc:
            return report(exc, EXIT_DATA, debug)

    return wrapper


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose parse errors are `UserError`s (one line, exit 2) instead of usage + exit.

    Subparsers made by `add_subparsers` are of this class too.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.add_help:
            self.add_argument(DEBUG_FLAG, action="store_true",
                              help=f"show the traceback of a user error too (or set {DEBUG_ENV}=1)")

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}", f"see `{self.prog} --help`")
