"""Value checks that read device tensors on the host, and the switch that keeps them out of training.

Checking a device tensor's values (`bool(mask.any())`, `int(x.max())`) makes the CPU wait for the
device: one host-device synchronisation each, which stalls the training step's queue of kernels.
User-facing calls (encode_audio, a frontend called by hand) keep these checks: a clear error beats a
silent wrong answer. The training step validates its batch on the CPU side (collate) and runs with
the checks off; set CLSP_CHECKS=1 to turn them back on there while debugging.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_FORCED = os.environ.get("CLSP_CHECKS", "") == "1"
_enabled = True


def enabled() -> bool:
    """Whether value checks that need a host read should run now."""
    return _enabled or _FORCED


@contextmanager
def disabled() -> Iterator[None]:
    """Skip host-reading value checks inside the block (the training step); CLSP_CHECKS=1 overrides."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous
