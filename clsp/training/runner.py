"""Run a composed config: build model, losses, data and trainer; fit; export; evaluate.

Run folder (one per run, shared by all ranks): `<run.output_dir>/<run.name>/<run id>/` holding
config.yaml, tokenizer/, checkpoints/{last,best}.ckpt, metrics.csv, model/ and results.json.
The run id is rank 0's time stamp, plus the job id under SLURM/LSF (`20260101-120000-job4242`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from clsp.atomic import write_text_atomic
from clsp.errors import UserError
from clsp.training.compose import ConfigError
from clsp.training.launch import RUN_ID_VAR, Launch, detect, once, run_id, start_process_group


def run_folder(cfg: DictConfig, launch: Launch) -> tuple[Path, str | None]:
    """(run folder, checkpoint to resume from or None). Decided on rank 0 (see `launch.once`)."""
    root = Path(cfg.run.output_dir) / str(cfg.run.name)
    resume = cfg.get("resume")
    if resume:
        from clsp.training.checkpoint import latest_checkpoint

        try:
            ckpt = latest_checkpoint(root) if str(resume) == "latest" else Path(str(resume))
        except FileNotFoundError as exc:
            raise ConfigError(str(exc)) from None
        if not ckpt.exists():
            raise ConfigError(f"resume: checkpoint not found: {ckpt}")
        return ckpt.resolve().parent.parent, str(ckpt)
    if cfg.run.get("dir"):
        return Path(cfg.run.dir), None
    # The processes Lightning's launcher starts later inherit rank 0's choice through the environment.
    name = os.environ.get(RUN_ID_VAR) or (run_id(launch) if launch.is_rank_zero else None)
    if name is None:
        raise ConfigError(f"rank {launch.node_rank}/{launch.local_rank} cannot tell which run folder rank 0 uses: "
                          "set run.dir, or start the processes with torchrun, srun, LSF or MPI")
    os.environ[RUN_ID_VAR] = name
    return root / name, None


def prepare_data(cfg: DictConfig) -> None:
    """Build the demo corpus when the recipe asks for it, then check every shard path exists (rank 0)."""
    data = cfg.data
    if data.get("demo") is not None:
        from clsp.data.demo import build_demo

        demo = data.demo
        build_demo(demo.root, seed=int(demo.seed), n_train=int(demo.n_train), n_val=int(demo.n_val),
                   n_test=int(demo.n_test), sample_rate=int(cfg.model.audio.sample_rate))
    from clsp.data.reader import parse_sources

    for split in ("train", "val", "test"):
        spec = data.get(split)
        if spec:
            try:
                parse_sources(OmegaConf.to_container(spec) if OmegaConf.is_config(spec) else spec)
            except (FileNotFoundError, ValueError) as exc:
                raise ConfigError(f"data.{split}: {exc}") from None


def build_model(cfg: DictConfig):
    """(model, pretrained parameter prefixes) from run.init_from or the model config."""
    from clsp.config import CLSPConfig
    from clsp.loading import load_model
    from clsp.model import CLSPModel

    if cfg.run.get("init_from"):
        try:
            model = load_model(str(cfg.run.init_from))
        except UserError as exc:
            raise ConfigError(f"run.init_from: {exc.what}", exc.todo) from exc
        except (FileNotFoundError, ValueError) as exc:  # a missing folder, foreign file, unreachable hub id
            raise ConfigError(f"run.init_from={str(cfg.run.init_from)!r}: {' '.join(str(exc).split())}",
                              "give a clsp model folder or hub id, a training .ckpt, or clap:<folder or hub id>") from exc
        return model.train(), ("audio.", "text.")
    try:
        config = CLSPConfig.from_dict(OmegaConf.to_container(cfg.model, resolve=True))
    except ValueError as exc:
        raise ConfigError(f"model: {exc}") from None
    model = CLSPModel(config)
    prefixes = tuple(p for p, src in (("audio.", config.audio.pretrained), ("text.", config.text.pretrained)) if src)
    return model, prefixes


def build_trainer(cfg: DictConfig, folder: Path, has_val: bool):
    """A Lightning Trainer from `trainer:` (its keys are Trainer arguments, bar `CLSP_ONLY`), with the
    `logger:` entries and the callbacks (checkpoints, EMA, any `trainer.callbacks` entries)."""
    import lightning as L
    from lightning.pytorch.callbacks import ProgressBar

    from clsp.training.callbacks import EMA, RichProgressBar, checkpoint_callbacks
    from clsp.training.components import instantiate
    from clsp.training.schema import CLSP_ONLY

    t = OmegaConf.to_container(cfg.trainer, resolve=True)
    callbacks: list = checkpoint_callbacks(folder / "checkpoints", int(t["checkpoint_every_n_steps"]), has_val)
    if t["ema_decay"]:
        callbacks.append(EMA(decay=float(t["ema_decay"])))
    callbacks += [instantiate(node, f"trainer.callbacks.{name}") for name, node in t["callbacks"].items()]
    # Lightning's own choice of bar (rich when installed), fixed; a bar from trainer.callbacks wins.
    chosen = any(isinstance(c, ProgressBar) for c in callbacks)
    if t["enable_progress_bar"] and not chosen and importlib.util.find_spec("rich") is not None:
        callbacks.append(RichProgressBar())
    loggers = [instantiate(node, f"logger.{name}", save_dir=str(folder)) for name, node in cfg.logger.items()]
    kwargs: dict[str, Any] = {k: v for k, v in t.items() if k not in CLSP_ONLY}
    if kwargs["max_steps"] is None:
        kwargs["max_steps"] = -1  # Lightning's "no step limit"
    if not has_val:
        kwargs.pop("val_check_interval", None)
        kwargs.pop("check_val_every_n_epoch", None)
        kwargs["limit_val_batches"] = 0
    try:
        return L.Trainer(**kwargs, num_sanity_val_steps=0, use_distributed_sampler=False,
                         default_root_dir=str(folder), logger=loggers, callbacks=callbacks)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"trainer: {exc}") from None


def train(cfg: DictConfig) -> dict[str, Any]:
    """The whole run. Returns the final results (test retrieval metrics and paths) on rank 0, {} elsewhere."""
    import warnings

    import lightning as L

    # Known and harmless here: our IterableDataset's __len__ is exact per rank and worker by design,
    # and Lightning's own use of a deprecated torch pytree name.
    warnings.filterwarnings("ignore", message=".*IterableDataset.*has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")

    from clsp.training.components import build_losses
    from clsp.training.datamodule import CLSPDataModule
    from clsp.training.module import CLSPTrainingModule

    losses, caption_schedule = build_losses(cfg.loss)
    launch = detect()
    start_process_group(launch, str(cfg.trainer.accelerator))

    def resolve_and_prepare() -> tuple[Path, str | None]:
        where = run_folder(cfg, launch)
        prepare_data(cfg)
        return where

    # Rank 0 picks the folder and builds the data while the others wait; they get its answer.
    folder, resume_ckpt = once(launch, resolve_and_prepare, fallback=lambda: run_folder(cfg, launch))
    if resume_ckpt:  # a resumed run's checkpoints/ holds the run's own files, as it should
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    L.seed_everything(int(cfg.run.seed), workers=True, verbose=False)
    model, prefixes = build_model(cfg)

    def write_run_files() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / "config.yaml", OmegaConf.to_yaml(cfg))
        model.tokenizer.save_pretrained(str(folder / "tokenizer"))

    once(launch, write_run_files, fallback=lambda: None)
    data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
    datamodule = CLSPDataModule(
        data_cfg, model.config, model.tokenizer, seed=int(cfg.run.seed), hard_negatives=losses.needs_negatives,
        caption_policy="both" if losses.needs_all_captions else None,
    )
    module = CLSPTrainingModule(
        model, losses, OmegaConf.to_container(cfg.optim, resolve=True),
        caption_schedule=caption_schedule, pretrained_prefixes=prefixes,
        seed=int(cfg.run.seed),
    )
    if cfg.trainer.compile:
        module.model.audio.compile()
        module.model.text.compile()
    trainer = build_trainer(cfg, folder, has_val=bool(data_cfg.get("val")))
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_ckpt, weights_only=True)
    if not trainer.is_global_zero:
        return {}
    results = finish(cfg, folder, module, trainer.strategy.root_device)
    for logger in trainer.loggers:  # Lightning leaves the W&B run open; an unfinished run loses its summary
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()
    return results


def finish(cfg: DictConfig, folder: Path, module, device) -> dict[str, Any]:
    """Export the best (else the last) checkpoint's weights to <run>/model; evaluate that folder on
    data.test on the training device. Reading the checkpoint, not the live module, covers DeepSpeed
    (sharded weights, merged by the conversion) and EMA (the average) the same way."""
    import torch

    from clsp.data.reader import expand_urls
    from clsp.evaluation.datasets import iter_shard_clips
    from clsp.evaluation.retrieval import evaluate_retrieval, with_mean_map
    from clsp.loading import model_from_checkpoint
    from clsp.model import CLSPModel
    from clsp.training.callbacks import BEST, LAST
    from clsp.training.datamodule import val_captions

    checkpoints = folder / "checkpoints"
    source = next((p for p in (checkpoints / BEST, checkpoints / LAST) if p.exists()), None)
    model = model_from_checkpoint(source) if source is not None else module.model.eval()
    model.save_pretrained(folder / "model")
    weights = {BEST: "best", LAST: "final"}.get(source.name if source else "", "final")
    results: dict[str, Any] = {"model": str(folder / "model"), "weights": weights,
                               "skipped": module.skipped, "truncated": module.truncated}
    test = cfg.data.get("test")
    if test and cfg.run.get("final_eval", True):
        model = CLSPModel.from_pretrained(folder / "model").to(torch.device(device)).eval()
        # The very path of `python -m clsp.eval retrieval --data <test> --captions <val_caption_policy>`,
        # so results.json and that command agree on the same model and data (windowing included).
        urls = expand_urls(OmegaConf.to_container(test) if OmegaConf.is_config(test) else test)
        skipped: dict[str, int] = {}
        metrics = with_mean_map(evaluate_retrieval(model, iter_shard_clips(urls, val_captions(cfg.data), skipped)))
        results["test"] = metrics
        results["test_skipped"] = skipped
        results["chance"] = chance_levels(int(metrics["num_clips"]), int(metrics["num_captions"]))
        results["device"] = str(model.device)
        model.save_model_card(folder / "model", results=results)  # the card now shows the test table
    write_text_atomic(folder / "results.json", json.dumps(results, indent=2))
    return results


def chance_levels(n_clips: int, n_captions: int, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """Expected R@k (percent) of a random ranking, for c = n_captions / n_clips captions per clip."""
    c = max(1, round(n_captions / max(n_clips, 1)))
    out = {}
    for k in ks:
        out[f"t2a/R@{k}"] = 100 * min(1.0, k / n_clips)
        # a2t: a clip is found if any of its c captions is in the top k of n_captions.
        out[f"a2t/R@{k}"] = 100 * (1 - math.comb(max(n_captions - c, 0), k) / math.comb(n_captions, k)) \
            if n_captions >= k else 100.0
    return out


def format_results(results: dict[str, Any]) -> str:
    """The small table the demo prints: R@1/R@10 both directions with chance beside them."""
    lines = []
    if "test" in results:
        test, chance = results["test"], results["chance"]
        lines.append(f"held-out test: {int(test['num_clips'])} clips, {int(test['num_captions'])} captions")
        lines.append(f"{'metric':<12}{'model':>9}{'chance':>9}{'x chance':>10}")
        for key in ("t2a/R@1", "t2a/R@10", "a2t/R@1", "a2t/R@10"):
            ratio = test[key] / chance[key] if chance[key] > 0 else float("inf")
            lines.append(f"{key:<12}{test[key]:>8.1f}%{chance[key]:>8.1f}%{ratio:>9.1f}x")
        lines.append(f"{'mAP@10':<12}{test['mAP@10']:>8.1f}%")
    skipped = {k: v for k, v in results.get("skipped", {}).items() if v}
    if skipped:
        lines.append(f"data: {skipped}")
    lines.append(f"model written to {results['model']} ({results['weights']} weights)")
    return "\n".join(lines)
