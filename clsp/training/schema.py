"""The typed tree of a training run, registered in Hydra's ConfigStore.

`configs/train.yaml` starts from `train_schema` (this tree), so every group file and override is
merged into dataclasses: any field can be set without `+`, and a misspelled key is an error that
names it. The model tree is `clsp.config.CLSPConfig` itself. Numbers that `compose.CHECKS` checks
are typed `Any` here on purpose: CHECKS accepts '1e-4' and 8.0 where a plain int/float field would
not, and its errors say which range and give an example. `loss`, `logger` and `callbacks` hold
`_target_` entries (free-form: each component takes its own arguments).

Recipes are stored in the `recipe` group from `recipes/*.yaml`, so configs/ needs no link to them.
A recipe marks a setting the user must give as `${required:KEY}`: merging `???` cannot replace a
schema default (OmegaConf keeps the old value); an interpolation can, and it resolves to `???`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from clsp.config import CLSPConfig


@dataclass
class DemoSettings:
    """The procedural demo corpus (`clsp.data.demo`), built on first use."""

    root: str = "data/demo"
    seed: int = 0
    n_train: int = 2000
    n_val: int = 200
    n_test: int = 200


@dataclass
class DataSettings:
    """Shards per split and the loader settings; the rest of `DataConfig` follows the model."""

    train: Any = MISSING  # shard spec(s): folder, tar, brace pattern, table, or a list of them
    val: Any = None
    test: Any = None
    demo: DemoSettings | None = None  # set = build the demo corpus first
    caption_policy: str = "short"  # short | long | both | random
    val_caption_policy: str = "short"  # short | long | all
    caption_choice: str = "random"  # which caption of a kind in training: random | first
    batch_size: Any = 32
    val_batch_size: Any = None  # null = batch_size
    num_workers: Any = 2
    epoch_mode: bool = True
    samples_per_epoch: Any = None
    shuffle_buffer: Any = 1000
    bucketing: bool = False
    max_batch_seconds: Any = None
    max_seconds: Any = None  # null = the audio tower's window (6 windows for fusion)
    max_failure_rate: Any = 0.1
    pin_memory: bool = False


@dataclass
class OptimSettings:
    """Parameter groups (lr, tower_lr, weight_decay) and the `_target_` optimizer and scheduler."""

    lr: Any = 1e-4  # heads, scales and randomly initialised towers
    tower_lr: Any = None  # pretrained towers (null = lr)
    weight_decay: Any = 0.0  # never on biases, norms or scales
    # Built as optimizer(param_groups, lr=lr) and scheduler(optimizer, total_steps=...).
    optimizer: Any = field(default_factory=lambda: {"_target_": "torch.optim.AdamW"})
    scheduler: Any = field(default_factory=lambda: {"_target_": "clsp.training.optim.warmup_cosine"})


@dataclass
class TrainerSettings:
    """Lightning Trainer arguments (passed through by name) plus the clsp-only keys in `CLSP_ONLY`."""

    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: Any = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: Any = 1000  # null = no step limit (max_epochs decides)
    max_epochs: Any = None
    val_check_interval: Any = None  # an int counts batches, a float is a fraction of an epoch
    check_val_every_n_epoch: Any = 1
    log_every_n_steps: Any = 10
    gradient_clip_val: Any = 1.0
    accumulate_grad_batches: Any = 1
    enable_progress_bar: bool = True
    # clsp-only: the atomic last.ckpt period, torch.compile of the towers, EMA of the weights.
    checkpoint_every_n_steps: Any = 200
    compile: bool = False
    ema_decay: Any = None
    # Extra Lightning callbacks by `_target_`, e.g. `+trainer.callbacks.lr={_target_: lightning.pytorch.callbacks.LearningRateMonitor}`.
    callbacks: dict[str, Any] = field(default_factory=dict)


# Trainer keys that are not Lightning Trainer arguments.
CLSP_ONLY = ("checkpoint_every_n_steps", "compile", "ema_decay", "callbacks")


@dataclass
class RunSettings:
    name: str = "run"  # folder name under output_dir
    output_dir: str = "runs"
    seed: Any = 0
    init_from: str | None = None  # a clsp model folder / hub id, clap:<CLAP>, a .pt or a .ckpt
    final_eval: bool = True  # after training: evaluate on data.test and write <run>/model
    dir: str | None = None  # an explicit run folder (default: <output_dir>/<name>/<run id>)


@dataclass
class TrainConfig:
    model: CLSPConfig = field(default_factory=CLSPConfig)
    data: DataSettings = field(default_factory=DataSettings)
    loss: dict[str, Any] = field(default_factory=dict)  # term -> {_target_, weight, ...}
    optim: OptimSettings = field(default_factory=OptimSettings)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    logger: dict[str, Any] = field(default_factory=dict)  # name -> {_target_, ...}
    run: RunSettings = field(default_factory=RunSettings)
    resume: str | None = None  # "latest" continues the newest run with this name; or a .ckpt path
    recipe_name: str | None = None


def register() -> None:
    """Store the schema and the recipes in Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    from clsp.resources import recipe_dir

    OmegaConf.register_new_resolver("required", _required, replace=True)
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    for path in sorted(recipe_dir().glob("*.yaml")):
        # The `# @package _global_` header is a file-level directive; the store takes it as `package`.
        store.store(group="recipe", name=path.stem, node=OmegaConf.load(path), package="_global_")


def _required(key: str) -> str:
    """`${required:KEY}` resolves to `???`, which the composed config then lists as missing."""
    return MISSING
