"""The error contract shared by every entry point (`clsp.train`, `eval`, `shards`, `export`, `convert`).

- A user error (bad argument, override, value type or range, missing or foreign file, unreachable
  hub id, unusable table) raises `UserError`: the entry point prints one line
  `error: <what> — <what to do>` on stderr and exits 2.
- A data failure past its limit exits 1 with its one line.
- Anything else is a bug and keeps its traceback.

Library code raises `UserError` (or a subclass) where the cause is the caller's input; entry points
turn it into the one line. This module imports nothing from the rest of clsp, so every layer may use it.
"""

from __future__ import annotations


class UserError(ValueError):
    """Input the user can fix. `str(exc)` is the one line printed after `error: `."""

    def __init__(self, what: str, todo: str | None = None) -> None:
        self.what = what
        self.todo = todo
        super().__init__(f"{what} — {todo}" if todo else what)
