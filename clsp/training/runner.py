"""Run a composed config: build model, losses, data and trainer; fit; export; evaluate.

Run folder (one per run, shared by all ranks): `<run.output_dir>/<run.name>/<run id>/` holding
config.yaml (what ran: the model section is the built model's own config), tokenizer/ (and
decoder_tokenizer/ for a model with a caption decoder), launch.json (the job ids a restart finds
it by), checkpoints/{last,best}.ckpt, metrics.csv, model/ and results.json. The run id is rank 0's time stamp, plus the job id under SLURM/LSF
(`20260101-120000-job4242`, an array task `...-job4242_7`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from clsp.atomic import write_text_atomic
from clsp.config import CLSPConfig
from clsp.data.config import DataConfig
from clsp.data.demo import build_demo
from clsp.data.table_cache import resolve_tables
from clsp.data.urls import expand_urls, parse_sources
from clsp.errors import ConfigError, UserError
from clsp.evaluation.caption_task import evaluate_captioning
from clsp.evaluation.clips import Skips, shard_clips
from clsp.evaluation.retrieval import evaluate_retrieval
from clsp.loading import load_model, model_from_checkpoint
from clsp.model import DECODER_TOKENIZER_DIR, CLSPModel
from clsp.training.callbacks import BEST, EMA, LAST, RandomState, checkpoint_callbacks
from clsp.training.components import build_losses, component_class, instantiate
from clsp.training.compose import typed_config
from clsp.training.counters import DataCounters
from clsp.training.fit import fit_machine, fit_to_data, world_size
from clsp.training.launch import RUN_ID_VAR, Launch, detect, once, run_id, start_process_group
from clsp.training.module import CLSPTrainingModule
from clsp.training.preemption import Preemption, preemption_plugins
from clsp.training.progress import output_callbacks
from clsp.training.restart import continued_run, record_launch
from clsp.training.resume import ResumedStep
from clsp.training.schema import CLSP_ONLY, TrainConfig
from clsp.training.throughput import ThroughputCallback


def run_folder(cfg: TrainConfig, launch: Launch) -> tuple[Path, str | None]:
    """(run folder, checkpoint to resume from or None). Decided on rank 0 (see `launch.once`); `resume` and
    restarted jobs in `clsp.training.restart`."""
    root = Path(cfg.run.output_dir) / str(cfg.run.name)
    folder, ckpt = continued_run(cfg.resume, root, cfg.run.dir)
    if folder is not None:
        return folder, ckpt
    if cfg.run.dir:
        return Path(cfg.run.dir), ckpt
    # The processes Lightning's launcher starts later inherit rank 0's choice through the environment.
    name = os.environ.get(RUN_ID_VAR) or (run_id(launch) if launch.is_rank_zero else None)
    if name is None:
        raise ConfigError(f"rank {launch.node_rank}/{launch.local_rank} cannot tell which run folder rank 0 uses: "
                          "set run.dir, or start the processes with torchrun, srun, LSF or MPI")
    os.environ[RUN_ID_VAR] = name
    return root / name, ckpt


def prepare_data(cfg: TrainConfig, progress: bool = True) -> DataConfig:
    """Build the demo corpus when the recipe asks for it, write tables to cached shards, and check every
    shard path exists; returns the data section with tables replaced by their shards (rank 0 first)."""
    demo = cfg.data.demo
    if demo is not None:
        build_demo(demo.root, seed=demo.seed, n_train=demo.n_train, n_val=demo.n_val, n_test=demo.n_test,
                   samples_per_shard=demo.samples_per_shard, sample_rate=cfg.model.audio.sample_rate)
    try:
        data = resolve_tables(cfg.data, progress=progress)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError.from_exception(exc, "check the table's path and columns (data.table.*)") from None
    for split in ("train", "val", "test"):
        spec = getattr(data, split)
        if spec:
            try:
                parse_sources(spec)
            except (FileNotFoundError, ValueError) as exc:
                raise ConfigError(f"data.{split}: {exc}", f"check the path given as data.{split} (shards: a folder, "
                                  ".tar or brace pattern; or a csv/tsv/jsonl/parquet table)") from None
    return data


def build_model(cfg: TrainConfig, model_overrides: dict[str, Any] | None = None) -> tuple[CLSPModel, tuple[str, ...]]:
    """(model, pretrained parameter prefixes) from run.init_from or the model config.

    With run.init_from the model (architecture, frontend, weights) comes from there; `model.*` keys
    given explicitly (`model_overrides`, nested) are applied to its config, and a key that would
    change the architecture its weights need is a one-line error."""
    if not cfg.run.init_from:
        model = CLSPModel(cfg.model)
        # A pretrained decoder's LM trains at tower_lr; its bridge (and a random LM) at lr.
        sources = (("audio.", cfg.model.audio.pretrained), ("text.", cfg.model.text.pretrained),
                   ("decoder.lm.", cfg.model.decoder.pretrained if cfg.model.decoder else None))
        return model, tuple(p for p, src in sources if src)
    try:
        model = load_model(cfg.run.init_from)
    except UserError as exc:
        raise ConfigError(f"run.init_from: {exc.what}", exc.todo) from exc
    except (FileNotFoundError, ValueError) as exc:  # a missing folder, foreign file, unreachable hub id
        raise ConfigError(f"run.init_from={cfg.run.init_from!r}: {' '.join(str(exc).split())}",
                          "give a clsp model folder or hub id, a training .ckpt, or clap:<folder or hub id>") from exc
    if model_overrides:
        model = _apply_overrides(model, model_overrides)
    if model.decoder is None and build_losses(cfg.loss).needs_captions:
        raise ConfigError(f"a loss term trains the caption decoder but the model of run.init_from={cfg.run.init_from} "
                          "has none", "start from a model trained with a decoder (recipe=fusionaudio_caption)")
    return model.train(), ("audio.", "text.", "decoder.lm.")


def _apply_overrides(model: CLSPModel, overrides: dict[str, Any]) -> CLSPModel:
    """`model` rebuilt with `overrides` on its config and its own weights loaded back."""
    data = model.config.to_dict()
    for section, values in overrides.items():
        if section not in data or not isinstance(values, dict):
            raise ConfigError(f"model.{section}: not a model config section")
        data[section].update(values)
    keys = ", ".join(f"model.{s}.{k}" for s, v in overrides.items() for k in v)
    try:
        rebuilt = CLSPModel(CLSPConfig.from_dict(data), tokenizer=model.tokenizer,
                            decoder_tokenizer=model.decoder.tokenizer if model.decoder is not None else None)
        rebuilt.load_state(model.state_dict(), source="run.init_from")
    except ValueError as exc:
        raise ConfigError(f"{keys} cannot apply to the model of run.init_from: {' '.join(str(exc).split())}",
                          "drop the override: the architecture and frontend come from run.init_from") from None
    return rebuilt


def build_trainer(cfg: TrainConfig, folder: Path, has_val: bool) -> L.Trainer:
    """A Lightning Trainer from `trainer:` (its keys are Trainer arguments, bar `CLSP_ONLY`), with the
    `logger:` entries and the callbacks (checkpoints, EMA, counters, any `trainer.callbacks` entries)."""
    t = cfg.trainer
    callbacks: list = checkpoint_callbacks(folder / "checkpoints", t.checkpoint_every_n_steps, has_val)
    callbacks += [RandomState(), ResumedStep(), DataCounters(cfg.data.max_failure_rate),
                  ThroughputCallback(t.peak_tflops)]
    if t.ema_decay:
        callbacks.append(EMA(decay=t.ema_decay))
    callbacks += [instantiate(node, f"trainer.callbacks.{name}") for name, node in t.callbacks.items()]
    callbacks += output_callbacks(t.enable_progress_bar, callbacks)  # unless trainer.callbacks has a bar
    callbacks.append(Preemption(t.requeue_signal))  # after every other step's work (EMA), before the checkpoints
    loggers = [instantiate(node, f"logger.{name}", save_dir=str(folder)) for name, node in cfg.logger.items()]
    kwargs: dict[str, Any] = {f.name: getattr(t, f.name) for f in dataclasses.fields(t) if f.name not in CLSP_ONLY}
    if kwargs["max_steps"] is None:
        kwargs["max_steps"] = -1  # Lightning's "no step limit"
    if not has_val:
        kwargs.pop("val_check_interval", None)
        kwargs.pop("check_val_every_n_epoch", None)
        kwargs["limit_val_batches"] = 0
    try:
        return L.Trainer(**kwargs, num_sanity_val_steps=0, use_distributed_sampler=False, plugins=preemption_plugins(),
                         default_root_dir=str(folder), logger=loggers, callbacks=callbacks)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"trainer: {exc}") from None


def resolved_config(raw: DictConfig, model: CLSPModel) -> str:
    """config.yaml: the composed config, with the model section the built model's own config."""
    record = OmegaConf.to_container(raw, resolve=True)
    record["model"] = model.config.to_dict()
    return OmegaConf.to_yaml(OmegaConf.create(record))


def train(raw: DictConfig, model_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole run. Returns the final results (test retrieval metrics and paths) on rank 0, {} elsewhere."""
    # Known and harmless here: our IterableDataset's __len__ is exact per rank and worker by design,
    # and Lightning's own use of a deprecated torch pytree name.
    warnings.filterwarnings("ignore", message=".*IterableDataset.*has `__len__` defined.*")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    auto_workers = OmegaConf.select(raw, "data.num_workers") is None
    launch = detect()
    cfg = fit_machine(typed_config(raw), auto_workers, external=launch.external)
    losses = build_losses(cfg.loss)
    start_process_group(launch, cfg.trainer.accelerator)

    def resolve_and_prepare() -> tuple[Path, str | None, DataConfig]:
        return *run_folder(cfg, launch), prepare_data(cfg)

    # Rank 0 picks the folder and builds the data while the others wait; they get its answer (processes
    # Lightning starts later find the data built and the tables cached).
    folder, resume_ckpt, data = once(launch, resolve_and_prepare,
                                     fallback=lambda: (*run_folder(cfg, launch), prepare_data(cfg, progress=False)))
    cfg = fit_to_data(dataclasses.replace(cfg, data=data), launch.world_size if launch.external else world_size(cfg.trainer),
                      auto_workers)
    if resume_ckpt:  # a resumed run's checkpoints/ holds the run's own files, as it should
        warnings.filterwarnings("ignore", message=".*Checkpoint directory .* exists and is not empty.*")
    L.seed_everything(cfg.run.seed, workers=True, verbose=False)
    model, prefixes = build_model(cfg, model_overrides)

    def write_run_files() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / "config.yaml", resolved_config(raw, model))
        record_launch(folder)
        model.tokenizer.save_pretrained(str(folder / "tokenizer"))
        if model.decoder is not None:  # model_from_checkpoint reads it back beside tokenizer/
            model.decoder.tokenizer.save_pretrained(str(folder / DECODER_TOKENIZER_DIR))

    once(launch, write_run_files, fallback=lambda: None)
    decoder_tokenizer = model.decoder.tokenizer if losses.needs_captions else None  # only runs that train it
    datamodule = component_class(cfg.data._target_, "data._target_")(
        cfg.data, model.config, model.tokenizer, seed=cfg.run.seed, accumulate=cfg.trainer.accumulate_grad_batches,
        **({"decoder_tokenizer": decoder_tokenizer} if decoder_tokenizer is not None else {}))
    module = CLSPTrainingModule(model, losses, cfg.optim, pretrained_prefixes=prefixes,
                                caption_val_clips=cfg.data.caption_val_clips)
    if cfg.trainer.compile:
        module.model.compile_towers()
    trainer = build_trainer(cfg, folder, has_val=bool(cfg.data.val))
    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_ckpt, weights_only=True)
    if not trainer.is_global_zero:
        return {}
    counters = next(c for c in trainer.callbacks if isinstance(c, DataCounters))
    results = finish(cfg, folder, module, trainer.strategy.root_device, counters)
    for logger in trainer.loggers:  # Lightning leaves the W&B run open; an unfinished run loses its summary
        if type(logger).__name__ == "WandbLogger":
            logger.experiment.finish()
    return results


def finish(cfg: TrainConfig, folder: Path, module: CLSPTrainingModule, device: torch.device,
           counters: DataCounters | None = None) -> dict[str, Any]:
    """Export the best (else the last) checkpoint's weights to <run>/model; evaluate that folder on
    data.test on the training device. Reading the checkpoint, not the live module, covers DeepSpeed
    (sharded weights, merged by the conversion) and EMA (the average) the same way."""
    checkpoints = folder / "checkpoints"
    source = next((p for p in (checkpoints / BEST, checkpoints / LAST) if p.exists()), None)
    model = model_from_checkpoint(source) if source is not None else module.model.eval()
    model.save_pretrained(folder / "model")
    weights = {BEST: "best", LAST: "final"}.get(source.name if source else "", "final")
    results: dict[str, Any] = {"model": str(folder / "model"), "weights": weights,
                               "skipped": counters.skipped if counters else {},
                               "truncated": counters.truncated if counters else 0}
    if cfg.data.test and cfg.run.final_eval:
        model = CLSPModel.from_pretrained(folder / "model").to(device).eval()
        # The very path of `python -m clsp.eval retrieval --data <test> --captions <val_caption_policy>`
        # and of validation, so results.json, that command and metrics.csv agree on the same weights and data.
        skips = Skips()
        clips = shard_clips(expand_urls(cfg.data.test), cfg.data.val_caption_policy, skips,
                            sample_rate=model.sample_rate)
        metrics = evaluate_retrieval(model, clips, batch_size=cfg.data.eval_batch_size())
        results["test"] = metrics
        results["test_skipped"] = skips.counts
        results["chance"] = chance_levels(int(metrics["num_clips"]), int(metrics["num_captions"]))
        results["device"] = str(model.device)
        if model.decoder is not None:  # as `python -m clsp.eval captioning --data <test> --captions <that policy>`
            results["test_captioning"] = caption_test(cfg, model, folder / "test_captions.jsonl")
        model.save_model_card(folder / "model", results=results)  # the card now shows the test table
    write_text_atomic(folder / "results.json", json.dumps(results, indent=2))
    return results


def caption_test(cfg: TrainConfig, model: CLSPModel, out: Path) -> dict[str, Any]:
    """The model's captions of data.test scored against each clip's captions of data.val_caption_policy; the
    captions (with their references) go to `out` as JSONL, three of them into the metrics as examples."""
    clips = shard_clips(expand_urls(cfg.data.test), cfg.data.val_caption_policy, sample_rate=model.sample_rate)
    metrics, records = evaluate_captioning(model, clips, batch_size=cfg.data.eval_batch_size())
    write_text_atomic(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return {**metrics, "examples": records[:3]}


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
    if "test_captioning" in results:
        captioning = results["test_captioning"]
        scores = [f"{k} {captioning[k]:.3f}" for k in ("BLEU_4", "METEOR", "ROUGE_L", "CIDEr-D", "SPIDEr") if k in captioning]
        lines.append(f"held-out captions ({captioning['num_clips']} clips): {', '.join(scores)}")
        lines += [f"  {r['caption']!r}  (reference: {r['references'][0]!r})" for r in captioning["examples"]]
    skipped = {k: v for k, v in results.get("skipped", {}).items() if v}
    if skipped:
        lines.append(f"data: {skipped}")
    lines.append(f"model written to {results['model']} ({results['weights']} weights)")
    return "\n".join(lines)
