"""`ThroughputCallback`: samples/s, model FLOP/s and MFU in the logs and the progress bar.

Each training batch's FLOPs come from facts the host already holds (clips, padded audio width, caption
rows and their lengths from collate), priced by `clsp.flops.FlopCounter` (forward + backward FLOPs per
clip and per caption, counted once per shape on a meta-device twin of the model). The time is the host's
between batch ends, summed over the last `window` steps, so the
host's waits at Lightning's logging syncs average out. Nothing is read from the device and the
values are logged as CPU tensors (Lightning would copy a Python float to the GPU, a blocking upload), so
the callback adds no host-device sync to the step.

Logged per device: `perf/tflops_per_s` and, where the peak is known, `perf/mfu` (achieved / peak, the
peak from `clsp.flops.PEAK_TFLOPS` by the GPU's name, or `peak_tflops`). On a CPU only TFLOP/s is logged:
a CPU has no agreed dense peak. A step with a multi-positive loss is counted with every caption row of
the batch (the data chose them for that step); hard negatives add a caption per clip. `samples_per_s` is
the run's: this rank's rate times the number of ranks. The losses themselves (B x B logits) are not counted.
"""

from __future__ import annotations

import time
from collections import deque

import lightning as L
import torch

from clsp.data.batch import Batch
from clsp.flops import FlopCounter, peak_tflops


class ThroughputCallback(L.Callback):
    def __init__(self, peak_tflops: float | None = None, window: int = 20):
        super().__init__()
        self.peak_override = peak_tflops
        self._steps: deque[tuple[float, float, int]] = deque(maxlen=max(int(window), 1))  # (FLOPs, seconds, samples)
        self.peak: float | None = None
        self.counter: FlopCounter | None = None
        self._last: float | None = None
        self._on_gpu = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.counter = FlopCounter(pl_module.model)
        device = trainer.strategy.root_device
        self._on_gpu = device.type == "cuda"
        self.peak = self.peak_override
        if self.peak is None and self._on_gpu:
            self.peak = peak_tflops(torch.cuda.get_device_name(device))

    def batch_flops(self, pl_module: L.LightningModule, batch: Batch) -> float:
        """Forward + backward FLOPs of the towers on `batch`, from host-side facts only."""
        losses = pl_module.losses
        captions = len(batch.caption_lengths) if losses.needs_all_captions else batch.size
        tokens = max(batch.caption_lengths[:captions], default=batch.input_ids.shape[1])
        seconds = batch.audio.shape[1] / self.counter.sample_rate
        flops = self.counter.step(batch.size, seconds, captions, tokens)
        if losses.needs_negatives and batch.negative_lengths:
            flops += batch.size * self.counter.text(max(batch.negative_lengths))
        return flops

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch: Batch,
                           batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self._steps.append((self.batch_flops(pl_module, batch), now - self._last, batch.size))
            seconds = max(sum(t for _, t, _ in self._steps), 1e-9)
            tflops = sum(f for f, _, _ in self._steps) / seconds / 1e12
            # Every rank trains a batch per step: the run's samples/s is this rank's times the world size.
            samples = sum(n for _, _, n in self._steps) * trainer.world_size / seconds
            pl_module.log("samples_per_s", torch.tensor(samples), prog_bar=True, batch_size=batch.size)
            logged = {"perf/tflops_per_s": tflops}
            if self.peak:
                logged["perf/mfu"] = tflops / self.peak
            for name, value in logged.items():
                pl_module.log(name, torch.tensor(value), prog_bar=self._on_gpu, batch_size=batch.size)
        self._last = now

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None  # the gap between epochs is not a training step

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = None  # the time spent validating is not a training step's
