"""What a training run prints: clsp's own lines, with the libraries' chatter kept out unless asked for.

clsp says what it decided in one line each (`info`, rank 0 only, on stderr): what was fitted to the
machine and the data (`clsp.training.fit`), the model's size (`clsp.training.progress.ModelSize`).
Lightning says much more, most of it about Lightning: tips for its cloud products, the
GPU/TPU/HPU inventory, process-group banners, a FLOPs column that reads 0 for a model without an
example input. `quiet()` lowers Lightning's loggers to warnings and filters the warnings that do not
apply to a clsp run, each with its reason below. `--verbose` on `python -m clsp.train` keeps all of
it (every process of a run reads the flag: Lightning's launcher and torchrun repeat the command line).
"""

from __future__ import annotations

import logging
import sys
import warnings

from lightning.pytorch.utilities import rank_zero_only

log = logging.getLogger("clsp")
_verbose = [False]

# (message pattern, why it does not apply to a clsp run). Matched at the start of the message.
NOT_FOR_CLSP = (
    # trainer=cpu on a GPU machine is the user's choice (tests, debugging).
    ("GPU available but not used", "the accelerator was chosen"),
    # data.num_workers is sized to the machine by clsp (null = auto); a smaller number was asked for.
    (".*does not have many workers", "data.num_workers is sized to the machine"),
    # Lightning logs every log_every_n_steps optimizer steps counted over the run, so an epoch shorter than
    # the interval still logs (clsp.training.fit clamps the interval to the run).
    (".*is smaller than the logging interval", "logging counts steps over the run"),
    # The one-line model size (clsp.training.progress.ModelSize) counts the stored float32 weights.
    ("Precision .* is not supported by the model summary", "the summary gives the stored size"),
    # Lightning's own call inside its all_gather(sync_grads=True), not clsp's.
    ("torch.distributed.nn.functional.all_gather is deprecated", "inside Lightning"),
)


def verbose() -> bool:
    """True when `quiet(verbose=True)` kept the libraries' own output (`--verbose`)."""
    return _verbose[0]


def quiet(verbose_output: bool = False) -> None:
    """Set up clsp's line output; unless `verbose_output`, keep Lightning's information and the warnings
    above out. Called once per process by the entry point."""
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    _verbose[0] = verbose_output
    if verbose_output:
        return
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern, _why in NOT_FOR_CLSP:
        warnings.filterwarnings("ignore", message=pattern)


def info(message: str) -> None:
    """One line of clsp's own output, from rank 0 only (every rank decides the same)."""
    if rank_zero_only.rank == 0:
        log.info(message)
