"""The GPU report (tools/gpu_check.sh runs this file; also `python tools/bench.py gpu_check`).

Random weights (nothing is downloaded), bf16 autocast, fused AdamW; every training step is forward,
losses, backward and optimizer step. Sections, each guarded (an error, an out-of-memory or its time limit
is a line in the report, never its end):

1. fusionaudio shapes, HTSAT-base + RoBERTa-base, 10 s at 48 kHz, captions of 77 and 256 tokens, global
   InfoNCE with one caption per clip (LAION's benchmark setting): samples/s per GPU, TFLOP/s, MFU and peak
   memory at batch 416 (LAION's) and 768, with sdpa, eager and compiled towers; plus the recipe's own
   losses (global + token + multi-positive, 1.5 captions per clip) at 256 tokens.
2. fcaps shapes, Whisper-base + RoBERTa-base: 512 clips of 2-30 s in batches of 128 padded to their
   longest (no buckets) vs duration buckets of at most 800 padded seconds (the recipe's budget).
3. host-device syncs: a step under torch.cuda.set_sync_debug_mode("error"), for the model + losses and
   for the training module's step; the first syncing op is named.
4. one `trainer=deepspeed2` training step, where deepspeed is installed.

`gpu_frontend` (not in the report): clsp's batched log-mel frontends on the GPU vs the transformers
extractors (CPU numpy).

MFU = counted model FLOPs (clsp.flops: forward + backward of the towers, the losses left out) per second
over the dense bf16 peak (clsp.flops.PEAK_TFLOPS by the GPU's name, or CLSP_PEAK_TFLOPS). A Markdown
table of every row closes the report.
"""

from __future__ import annotations

import gc
import importlib.machinery
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tools/, when run as a script
try:
    import soundfile  # noqa: F401
except ImportError:  # clsp imports it to read audio files, which nothing here does
    sys.modules["soundfile"] = types.ModuleType("soundfile")
    sys.modules["soundfile"].__spec__ = importlib.machinery.ModuleSpec("soundfile", None)

BUDGET_S = float(os.environ.get("CLSP_GPU_CHECK_BUDGET_S", 320))  # the whole report; sections share it
# CLSP_GPU_CHECK_SMOKE=1: every section with tiny towers and batches on the CPU, to check this script
# without a GPU (tests/test_gpu_check.py); its numbers mean nothing.
SMOKE = os.environ.get("CLSP_GPU_CHECK_SMOKE") == "1"
DEVICE = "cpu" if SMOKE else "cuda"
BATCHES = (3, 4) if SMOKE else (416, 768)  # LAION's batch per GPU, and a larger one
FCAPS = dict(clips=16, batch=4, budget_s=30.0) if SMOKE else dict(clips=512, batch=128, budget_s=800.0)
ROWS: list[dict] = []
_START = time.monotonic()


class SectionTimeout(Exception):
    pass


def guarded(name: str, limit_s: float, run) -> None:
    """`run()` within `limit_s` seconds (and the report's budget); a failure or a timeout becomes one line."""
    # The CPU smoke run (a test, on a shared machine) checks that every section reaches its table: only the
    # whole budget bounds it there; on a GPU each section keeps its own share.
    left = BUDGET_S - (time.monotonic() - _START)
    limit = left if SMOKE else min(limit_s, left)
    print(f"== {name} (limit {max(limit, 0):.0f}s)", flush=True)
    if limit < 10:
        print("   skipped: the report's time budget is spent")
        ROWS.append({"run": name, "note": "skipped: time budget spent"})
        return

    def expire(*_):
        raise SectionTimeout(f"over its {limit:.0f}s limit")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(int(limit))
    try:
        run()
    except SectionTimeout as exc:
        print(f"   stopped: {exc}")
        ROWS.append({"run": name, "note": f"stopped: {exc}"})
    except Exception as exc:  # a report line, not the end of the report
        text = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        print(f"   failed: {text}")
        traceback.print_exc(limit=-3)
        ROWS.append({"run": name, "note": f"failed: {text[:120]}"})
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        _free()


def _free() -> None:
    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _device_name() -> str:
    return torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU (smoke run: the numbers mean nothing)"


def peak() -> float | None:
    from clsp.flops import peak_tflops

    if os.environ.get("CLSP_PEAK_TFLOPS"):
        return float(os.environ["CLSP_PEAK_TFLOPS"])
    return peak_tflops(_device_name())


def _batch(clips: int, seconds: list[float], tokens: int, sample_rate: int, captions: int | None = None):
    """(audio, lengths, ids, mask, caption_to_clip) on the GPU: clips of `seconds`, padded to the longest."""
    g = torch.Generator().manual_seed(0)
    captions = captions or clips
    lengths = torch.tensor([int(s * sample_rate) for s in seconds]).to(DEVICE)
    width = int(max(seconds) * sample_rate)
    noise = torch.randn(clips, width, device=DEVICE, generator=torch.Generator(DEVICE).manual_seed(0))
    audio = 0.1 * noise * (torch.arange(width, device=DEVICE) < lengths[:, None])
    caption_lengths = torch.randint(max(2, tokens // 2), tokens + 1, (captions,), generator=g)
    caption_lengths[0] = tokens
    mask = (torch.arange(tokens) < caption_lengths[:, None]).long()
    ids = torch.where(mask.bool(), torch.randint(3, 1000, (captions, tokens), generator=g), 1)
    owner = torch.cat([torch.arange(clips), torch.arange(captions - clips)])
    return (audio, lengths, *(t.to(DEVICE) for t in (ids, mask, owner)))


def _losses(full: bool):
    from clsp.losses import GlobalInfoNCE, LossSuite, MultiPositiveInfoNCE, TokenInfoNCE

    if not full:
        return LossSuite({"global": (GlobalInfoNCE(), 1.0)})
    return LossSuite({"global": (GlobalInfoNCE(), 1.0), "token": (TokenInfoNCE(), 0.5),
                      "multipositive": (MultiPositiveInfoNCE(), 0.5)})


def train_step(model, optimizer, losses, batch) -> None:
    """Forward (bf16 autocast), losses, backward, fused AdamW step: what a training step runs."""
    from clsp import checks
    from clsp.losses import ContrastiveOutputs

    audio, lengths, ids, mask, owner = batch
    tokens = losses.needs_tokens
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=not SMOKE), checks.disabled():
        a = model.embed_audio(audio, lengths, return_tokens=tokens)
        t = model.embed_text(ids, mask, return_tokens=tokens)
        b = len(audio)
        out = ContrastiveOutputs(a.embeds, t.embeds, owner, model.scale(), None, a.tokens, a.mask,
                                 None if t.tokens is None else t.tokens[:b], None if t.mask is None else t.mask[:b])
        total, _ = losses(out)
    total.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def measure(label: str, model, optimizer, losses, batches: list, flops: float, warmup: int = 2,
            repeats: int = 1) -> None:
    """Time `repeats` passes over `batches` after `warmup` steps; one report row (OOM is a row too)."""
    row = {"run": label}
    try:
        _sync()
        if DEVICE == "cuda":
            torch.cuda.reset_peak_memory_stats()
        for i in range(warmup):
            train_step(model, optimizer, losses, batches[i % len(batches)])
        _sync()
        start = time.perf_counter()
        for _ in range(repeats):
            for batch in batches:
                train_step(model, optimizer, losses, batch)
        _sync()
        seconds = time.perf_counter() - start
        clips = repeats * sum(len(b[0]) for b in batches)
        tflops = repeats * flops / seconds / 1e12
        top = peak()
        row.update(samples_per_s=clips / seconds, tflops=tflops, mfu=tflops / top if top else None,
                   memory_gib=torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else 0.0)
    except torch.cuda.OutOfMemoryError:
        row["note"] = "out of memory"
        optimizer.zero_grad(set_to_none=True)
        _free()
    ROWS.append(row)
    mfu = f"{100 * row['mfu']:.1f} %" if row.get("mfu") is not None else "n/a"
    print(f"   {label}: " + (row.get("note") or f"{row['samples_per_s']:.1f} samples/s, {row['tflops']:.1f} TFLOP/s, "
                              f"MFU {mfu}, peak memory {row['memory_gib']:.1f} GiB"), flush=True)


def _build(recipe: str):
    """The recipe's towers at full size on the GPU; tiny ones on the CPU in a smoke run."""
    from benchmarks.towers import preset, recipe_model
    from clsp.config import CLSPConfig
    from clsp.model import CLSPModel

    torch.manual_seed(0)
    if not SMOKE:
        return recipe_model(recipe, DEVICE, tokens=256).train()
    cfg = preset("tiny_htsat" if recipe == "fusionaudio" else "tiny_whisper")
    cfg["text"]["max_length"] = 256
    return CLSPModel(CLSPConfig.from_dict(cfg)).train()


def _model(recipe: str):
    from clsp.flops import FlopCounter

    model = _build(recipe)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    return model, optimizer, FlopCounter(model)


def _set_attention(model, kind: str) -> None:
    from clsp.audio.swin_attention import set_window_attention

    set_window_attention(model.audio.encoder, kind)
    model.text.encoder.config._attn_implementation = kind


def fusionaudio() -> None:
    """HTSAT-base + RoBERTa-base at LAION's batch 416 and at 768: sdpa, eager, compiled."""
    model, optimizer, counter = _model("fusionaudio")
    plain = _losses(full=False)
    small, large = BATCHES
    batches = {(b, n): [_batch(b, [10.0] * b, n, 48000)] for b in BATCHES for n in (77, 256)}

    def row(label, b, n, losses=plain, captions=None):
        batch = batches[b, n] if captions is None else [_batch(b, [10.0] * b, n, 48000, captions)]
        flops = counter.step(b, 10.0, captions or b, n)
        measure(f"fusionaudio {label}, batch {b}, {n} tok", model, optimizer, losses, batch, flops, repeats=3)

    def sdpa():
        for b, n in ((small, 77), (small, 256), (large, 77), (large, 256)):
            row("sdpa", b, n)
        row("sdpa, global+token+multipositive, 1.5 captions/clip", small, 256, _losses(full=True),
            captions=small * 3 // 2)

    def eager():
        _set_attention(model, "eager")
        try:
            for n in (77, 256):
                row("eager", small, n)
        finally:
            _set_attention(model, "sdpa")

    def compiled():
        from torch._dynamo.utils import counters

        model.compile_towers(**({"backend": "aot_eager"} if SMOKE else {}))
        start = time.perf_counter()
        train_step(model, optimizer, plain, batches[small, 77][0])  # compiles
        _sync()
        print(f"   compile + first step: {time.perf_counter() - start:.0f}s", flush=True)
        for b, n in ((small, 77), (small, 256), (large, 256)):
            row("compiled", b, n)
        graphs = counters["stats"]["unique_graphs"]
        print(f"   {graphs} graphs compiled for the 2 towers over 3 batch shapes")
        ROWS.append({"run": "compiled: graphs for the 2 towers over 3 batch shapes", "note": str(graphs)})

    guarded("fusionaudio: sdpa (the default)", 90, sdpa)
    guarded("fusionaudio: eager attention", 50, eager)
    guarded("fusionaudio: compiled (compile_towers)", 170, compiled)


def fcaps() -> None:
    """Whisper-base + RoBERTa-base on 512 clips of 2-30 s: padded random batches vs duration buckets."""
    guarded("fcaps: Whisper-base, random batches vs duration buckets", 70, _fcaps)


def _fcaps() -> None:
    model, optimizer, counter = _model("fcaps")
    losses = _losses(full=False)
    g = torch.Generator().manual_seed(0)
    seconds = (2 + 28 * torch.rand(FCAPS["clips"], generator=g)).tolist()
    for name, groups in (("no buckets", _random_batches(seconds, FCAPS["batch"])),
                         ("buckets", _buckets(seconds, FCAPS["batch"], FCAPS["budget_s"]))):
        batches = [_batch(len(s), s, 256, 16000) for s in groups]
        flops = sum(len(s) * (counter.audio(max(s)) + counter.text(256)) for s in groups)
        real = sum(seconds) / sum(len(s) * max(s) for s in groups)
        measure(f"fcaps {name}, {len(groups)} batches, {100 * real:.0f} % real audio", model, optimizer, losses,
                batches, flops, warmup=1)


def _random_batches(seconds: list[float], size: int) -> list[list[float]]:
    return [seconds[i:i + size] for i in range(0, len(seconds), size)]


def _buckets(seconds: list[float], size: int, budget_s: float) -> list[list[float]]:
    """Sorted durations cut into batches of at most `size` clips and `budget_s` padded seconds."""
    groups: list[list[float]] = [[]]
    for s in sorted(seconds):
        if len(groups[-1]) == size or (len(groups[-1]) + 1) * s > budget_s:
            groups.append([])
        groups[-1].append(s)
    return groups


def syncs() -> None:
    """A step under set_sync_debug_mode("error"): the model + losses, then the training module's step."""
    guarded("host-device syncs in the step", 40, _syncs)


def _syncs() -> None:
    model = _build("fusionaudio")
    losses = _losses(full=True)
    clips = 4 if SMOKE else 32
    batch = _batch(clips, [10.0] * clips, 256, 48000, captions=clips * 3 // 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    train_step(model, optimizer, losses, batch)  # warm-up: optimizer state, caches
    _sync_check("model + losses + backward + fused AdamW",
                lambda: train_step(model, optimizer, losses, batch))
    from clsp import checks
    from clsp.data.batch import Batch

    label = "the training module's contrastive_outputs + losses + backward"
    try:
        from clsp.training.module import CLSPTrainingModule
    except ModuleNotFoundError as exc:  # clsp.training needs omegaconf and hydra-core
        ROWS.append({"run": f"sync check: {label}", "note": f"not run: {exc}"})
        print(f"   {label}: not run: {exc}")
        return

    module = CLSPTrainingModule(model, losses)
    audio, lengths, ids, mask, owner = batch
    full = Batch(audio, lengths, ids, mask, owner, caption_kinds=["long"] * clips + ["short"] * (clips // 2),
                 caption_lengths=mask.sum(1).tolist())

    def module_step():
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=not SMOKE), checks.disabled():
            total, _ = losses(module.contrastive_outputs(full))
        total.backward()

    _sync_check(label, module_step)


def _sync_check(label: str, step) -> None:
    import clsp

    _sync()
    if DEVICE == "cuda":
        torch.cuda.set_sync_debug_mode("error")
    try:
        step()
        line = "no sync"
    except RuntimeError as exc:
        package = str(Path(clsp.__file__).parent)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(package)]
        where = f" at {frames[-1].filename.rsplit('/', 2)[-1]}:{frames[-1].lineno} ({frames[-1].line})" if frames else ""
        line = f"SYNC{where}: {' '.join(str(exc).split())[:120]}"
    finally:
        if DEVICE == "cuda":
            torch.cuda.set_sync_debug_mode(0)
    ROWS.append({"run": f"sync check: {label}", "note": line})
    print(f"   {label}: {line}", flush=True)


def deepspeed_step() -> None:
    """One `trainer=deepspeed2` step of the demo recipe, where deepspeed is installed."""
    if SMOKE or importlib.util.find_spec("deepspeed") is None:
        print("== deepspeed2: skipped (deepspeed is not installed)")
        ROWS.append({"run": "trainer=deepspeed2 step", "note": "skipped: deepspeed not installed"})
        return
    guarded("trainer=deepspeed2: one step", 90, _deepspeed)


def _deepspeed() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "clsp.train", "recipe=demo", "trainer=deepspeed2", "trainer.max_steps=1",
                   "trainer.enable_progress_bar=false", f"run.output_dir={tmp}/runs", f"data.demo.root={tmp}/demo",
                   "data.demo.n_train=32", "data.demo.n_val=8", "data.demo.n_test=8", "data.batch_size=8",
                   "data.num_workers=0", "run.final_eval=false"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=85)
        note = "ok" if done.returncode == 0 else f"failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}"
        ROWS.append({"run": "trainer=deepspeed2 step", "note": note})
        print(f"   {note}")


def table() -> str:
    """The rows as a Markdown table, the device named."""
    top = peak()
    lines = [f"{_device_name()}, torch {torch.__version__}, bf16 autocast, fused AdamW; MFU against "
             f"{top:.0f} TFLOP/s dense bf16" if top else f"{_device_name()} (peak unknown: no MFU)", "",
             "| run | samples/s | TFLOP/s | MFU | peak memory (GiB) | note |", "|---|---:|---:|---:|---:|---|"]
    for r in ROWS:
        cells = [r["run"], f"{r['samples_per_s']:.0f}" if "samples_per_s" in r else "",
                 f"{r['tflops']:.0f}" if "tflops" in r else "", f"{100 * r['mfu']:.1f} %" if r.get("mfu") else "",
                 f"{r['memory_gib']:.1f}" if "memory_gib" in r else "", r.get("note", "")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gpu_check() -> None:
    """Every section, then the Markdown table."""
    if not torch.cuda.is_available() and not SMOKE:
        print("   needs CUDA: skipped")
        return
    try:
        for run in (syncs, fcaps, fusionaudio, deepspeed_step):
            try:
                run()
            except Exception as exc:  # building a model failed: the next section still runs
                print(f"   failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
                ROWS.append({"run": run.__name__, "note": f"failed: {type(exc).__name__}: {str(exc)[:100]}"})
                _free()
    finally:
        print(f"\n== table ({time.monotonic() - _START:.0f}s)\n")
        print(table(), flush=True)


def gpu_frontend() -> None:
    """CLAP and Whisper log-mel frontends on the GPU vs the transformers extractors on the CPU."""
    if not torch.cuda.is_available():
        print("   needs CUDA: skipped")
        return
    from transformers import ClapFeatureExtractor, WhisperFeatureExtractor

    from benchmarks.common import interleaved, report
    from clsp.audio.frontend import ClapFrontend
    from clsp.audio.whisper_frontend import WhisperFrontend

    g = torch.Generator().manual_seed(0)
    for name, module, extractor, rate in [
        ("clap rand_trunc", ClapFrontend(truncation="rand_trunc").eval(),
         ClapFeatureExtractor(frequency_min=50, frequency_max=14000, truncation="rand_trunc"), 48000),
        ("whisper", WhisperFrontend(), WhisperFeatureExtractor(), 16000),
    ]:
        batch = 0.1 * torch.randn(64, 10 * rate, generator=g)
        arrays = [row.numpy() for row in batch]
        module, gpu_batch = module.cuda(), batch.cuda()

        def ours(module=module, gpu_batch=gpu_batch):
            with torch.inference_mode():
                module(gpu_batch)
            torch.cuda.synchronize()

        def base(extractor=extractor, arrays=arrays, rate=rate):
            extractor(arrays, sampling_rate=rate)

        ours_s, base_s = interleaved(ours, base, repeats=3)
        report(f"{name}, 64 x 10 s (GPU vs extractor on CPU)", ours_s, base_s)


BENCHMARKS = {"gpu_check": gpu_check, "gpu_frontend": gpu_frontend}

if __name__ == "__main__":
    gpu_check()
