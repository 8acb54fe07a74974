"""The typed tree of a training run, registered in Hydra's ConfigStore: one dataclass per section.

`configs/train.yaml` starts from `train_schema` (this tree), so every group file and override is
merged into dataclasses: any field can be set without `+`, a misspelt key is an error naming it,
and OmegaConf converts and checks each value's type ('1e-4' becomes a float; 'abc' for an integer
is an error). Each section checks its own ranges and choices in `__post_init__`, which runs when the
composed config is turned into objects (`clsp.training.compose`), before anything is built:

    model:   clsp.config.CLSPConfig    (towers named by `_target_`, heads, scales)
    data:    clsp.data.config.DataConfig (the data module's `_target_`, data, captions, reading)
    loss:    {term: {_target_, weight, ...}}   (clsp.training.components.build_losses)
    optim:   OptimConfig               (parameter groups, `_target_` optimizer and scheduler)
    trainer: TrainerConfig             (Lightning Trainer arguments + clsp's own, see CLSP_ONLY)
    logger:  {name: {_target_, ...}}   (Lightning loggers)
    run:     RunConfig                 (run folder, seed, init_from, final evaluation)

Recipes are stored in the `recipe` group from `recipes/*.yaml`, so configs/ needs no link to them.
A recipe marks a setting the user must give as `${required:KEY}`: merging `???` cannot replace a
schema default (OmegaConf keeps the old value); an interpolation can, and it resolves to `???`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from clsp.config import CLSPConfig
from clsp.data.config import DataConfig
from clsp.resources import recipe_dir
from clsp.validate import require

SCHEDULES = ("cosine", "constant")  # learning-rate schedules (clsp.training.optim.warmup_cosine)
# "auto": bf16-mixed on a GPU that has bf16, else 32-true (clsp.training.fit picks per device).
PRECISIONS = ("auto", "32-true", "32", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true", "64-true", "64",
              "transformer-engine", "transformer-engine-float16")
# Signals a scheduler can send ahead of preemption (SLURM `--signal=<name>@<seconds>`), by name without SIG.
REQUEUE_SIGNALS = ("USR1", "USR2", "TERM", "INT", "HUP", "QUIT", "ALRM", "XCPU")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu", "xla", "hpu")


@dataclass
class OptimConfig:
    """Parameter groups (lr, tower_lr, weight_decay) and the `_target_` optimizer and scheduler."""

    lr: float = 1e-4  # heads, scales and randomly initialised towers
    tower_lr: float | None = None  # pretrained towers (null = lr)
    weight_decay: float = 0.0  # never on biases, norms or scales
    # Built as optimizer(param_groups, lr=lr) and scheduler(optimizer, total_steps=...).
    optimizer: dict[str, Any] = field(default_factory=lambda: {"_target_": "torch.optim.AdamW"})
    scheduler: dict[str, Any] = field(default_factory=lambda: {"_target_": "clsp.training.optim.warmup_cosine"})

    def __post_init__(self) -> None:
        require("optim", "lr", self.lr, float, gt=0, example="optim.lr=1e-4")
        require("optim", "tower_lr", self.tower_lr, float, gt=0, null=True, example="optim.tower_lr=1e-5")
        require("optim", "weight_decay", self.weight_decay, float, ge=0)
        if "eps" in self.optimizer:
            require("optim.optimizer", "eps", self.optimizer["eps"], float, gt=0)
        if str(self.scheduler.get("_target_", "")).endswith("warmup_cosine"):
            require("optim.scheduler", "warmup_steps", self.scheduler.get("warmup_steps", 0), int, ge=0)
            require("optim.scheduler", "schedule", self.scheduler.get("schedule", "cosine"), choices=SCHEDULES)
            require("optim.scheduler", "min_lr_ratio", self.scheduler.get("min_lr_ratio", 0.0), float, ge=0, le=1)


@dataclass
class TrainerConfig:
    """Lightning Trainer arguments (passed through by name) plus the clsp-only keys in `CLSP_ONLY`."""

    accelerator: str = "cpu"  # "auto": a GPU where CUDA sees one, else the CPU (clsp.training.fit)
    devices: Any = 1  # an int, "auto", -1 (all), or a list / "0,1" of ids
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: int | None = 1000  # null (or -1) = no step limit (max_epochs decides)
    max_epochs: int | None = None
    val_check_interval: Any = None  # an int counts batches, a float is a fraction of an epoch
    check_val_every_n_epoch: int | None = 1
    log_every_n_steps: int = 10
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    enable_progress_bar: bool = True
    # clsp-only: the atomic last.ckpt period, torch.compile of the towers, EMA of the weights.
    checkpoint_every_n_steps: int = 200
    compile: bool = False
    ema_decay: float | None = None
    peak_tflops: float | None = None  # the device's dense bf16 peak for perf/mfu (null: clsp.flops' table)
    # The signal that checkpoints and requeues a SLURM job (`#SBATCH --signal=USR1@90`); SIGTERM and Ctrl-C
    # checkpoint and stop (clsp.training.preemption).
    requeue_signal: str = "USR1"
    # Extra Lightning callbacks by `_target_`, e.g. `+trainer.callbacks.lr={_target_: lightning.pytorch.callbacks.LearningRateMonitor}`.
    callbacks: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require("trainer", "accelerator", self.accelerator, choices=ACCELERATORS)
        if not _device_ids(self.devices):
            require("trainer", "devices", self.devices, int, ge=1, example="trainer.devices=1 (or auto, -1 = all, 0,1)")
        require("trainer", "num_nodes", self.num_nodes, int, ge=1)
        require("trainer", "precision", str(self.precision), choices=PRECISIONS)
        if self.max_steps != -1:
            require("trainer", "max_steps", self.max_steps, int, ge=1, null=True)
        require("trainer", "max_epochs", self.max_epochs, int, ge=1, null=True)
        require("trainer", "val_check_interval", self.val_check_interval, float, gt=0, null=True)
        require("trainer", "check_val_every_n_epoch", self.check_val_every_n_epoch, int, ge=1, null=True)
        require("trainer", "log_every_n_steps", self.log_every_n_steps, int, ge=1)
        require("trainer", "gradient_clip_val", self.gradient_clip_val, float, ge=0, null=True)
        require("trainer", "accumulate_grad_batches", self.accumulate_grad_batches, int, ge=1)
        require("trainer", "checkpoint_every_n_steps", self.checkpoint_every_n_steps, int, ge=1)
        require("trainer", "ema_decay", self.ema_decay, float, gt=0, lt=1, null=True, example="trainer.ema_decay=0.999")
        require("trainer", "peak_tflops", self.peak_tflops, float, gt=0, null=True)
        self.requeue_signal = str(self.requeue_signal).upper().removeprefix("SIG")
        require("trainer", "requeue_signal", self.requeue_signal, choices=REQUEUE_SIGNALS,
                example="trainer.requeue_signal=USR1")
        if self.ema_decay and "deepspeed" in str(self.strategy):
            # DeepSpeed saves the module's weights itself and drops the averaged `state_dict`.
            raise ValueError("trainer.ema_decay does not work with DeepSpeed strategies; use trainer=gpu (DDP) for "
                             "EMA, or trainer.ema_decay=null")


def _device_ids(value: Any) -> bool:
    """Lightning's other `devices` forms: "auto", -1 (all), a list of ids or "0,1"."""
    if value == -1 or value == "auto":
        return True
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    items = list(value) if isinstance(value, (list, tuple)) else None
    return bool(items) and all(str(v).strip().isdigit() for v in items)


# Trainer keys that are not Lightning Trainer arguments.
CLSP_ONLY = ("checkpoint_every_n_steps", "compile", "ema_decay", "peak_tflops", "requeue_signal", "callbacks")


@dataclass
class RunConfig:
    name: str = "run"  # folder name under output_dir
    output_dir: str = "runs"
    seed: int = 0
    init_from: str | None = None  # a clsp model folder / hub id, clap:<CLAP>, a .pt or a .ckpt
    final_eval: bool = True  # after training: evaluate on data.test and write <run>/model
    dir: str | None = None  # an explicit run folder (default: <output_dir>/<name>/<run id>)

    def __post_init__(self) -> None:
        require("run", "seed", self.seed, int, ge=0)


@dataclass
class TrainConfig:
    model: CLSPConfig = field(default_factory=CLSPConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: dict[str, Any] = field(default_factory=dict)  # term -> {_target_, weight, ...}
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: dict[str, Any] = field(default_factory=dict)  # name -> {_target_, ...}
    run: RunConfig = field(default_factory=RunConfig)
    # null: a restarted SLURM job or torchrun group continues its own run, else a fresh run; never: always
    # fresh; latest: the newest run with this name; or a .ckpt path (clsp.training.restart).
    resume: str | None = None
    recipe_name: str | None = None


def register() -> None:
    """Store the schema and the recipes in Hydra's ConfigStore (idempotent)."""
    OmegaConf.register_new_resolver("required", _required, replace=True)
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for path in sorted(recipe_dir().glob("*.yaml")):
        # The `# @package _global_` header is a file-level directive; the store takes it as `package`.
        store.store(group="recipe", name=path.stem, node=OmegaConf.load(path), package="_global_")


def _required(key: str) -> str:
    """`${required:KEY}` resolves to `???`, which the composed config then lists as missing."""
    return MISSING
