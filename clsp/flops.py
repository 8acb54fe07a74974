"""Model FLOPs per sample, counted, and the dense peak FLOP/s of common GPUs: the two halves of MFU.

`FlopCounter(model)` counts the forward + backward FLOPs of one clip and of one caption with torch's
`FlopCounterMode` (matmuls, convolutions, attention), on a twin of the model built on the meta device:
shapes only, so no memory, no compute, and the real model (its gradients included) is never touched.
The twin has no gradient checkpointing: its recomputed forward is hardware work, not model FLOPs, which
is what MFU counts. Autocast has no meta device, so the twin's log-mel frontend (no learnt weights) runs
on the CPU on zeros; its FFT is not counted, as in LAION's figures, which count the model alone.

A tower's FLOPs are a quadratic in its input length (linear layers and convolutions grow with it,
attention with its square; HTSAT's fixed window makes it a constant), so three counted lengths fix the
polynomial, which a fourth checks; a run of any lengths then costs eight counts (a tower that failed the
check would be counted at each new length instead). Whisper's stride-2 convolution rounds its positions
up, which puts a clip of n positions up to 1/n above the fit (0.3 % for a 3.4 s clip). The towers treat samples independently, so a batch's
FLOPs are clips x audio(padded seconds) + captions x text(padded tokens); the contrastive losses (B x B
logits) and a caption decoder are left out.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from clsp import checks
from clsp.model import CLSPModel

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name();
# the longest matching name wins ("H100 PCIe" before "H100").
PEAK_TFLOPS: dict[str, float] = {
    "GH200": 989.0, "H200": 989.0, "H100": 989.0, "H100 PCIe": 756.0, "H800": 989.0, "B200": 2250.0,
    "B100": 1750.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L40": 181.0, "A10G": 70.0, "L4": 121.0,
    "RTX 4090": 165.0, "A6000": 155.0,
}


def peak_tflops(device_name: str) -> float | None:
    """The table's dense bf16 peak for a device name (e.g. 'NVIDIA H200'), or None if it is not listed."""
    matches = [key for key in PEAK_TFLOPS if key in device_name]
    return PEAK_TFLOPS[max(matches, key=len)] if matches else None


class _CpuFrontend(nn.Module):
    """The twin's frontend: the real one's module on the CPU, fed zeros of the batch's shape; outputs on meta."""

    def __init__(self, frontend: nn.Module):
        super().__init__()
        self.frontend = copy.deepcopy(frontend).to_empty(device="cpu")  # buffer values do not change FLOPs

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        batch, width = waveforms.shape
        out = self.frontend(torch.zeros(batch, width), torch.full((batch,), width))
        return tuple(x.to("meta") for x in out)


class FlopCounter:
    """Forward + backward FLOPs per clip and per caption of a model's towers and heads (see the module doc)."""

    def __init__(self, model: CLSPModel):
        self.sample_rate = model.sample_rate
        self.max_seconds = model.config.audio.max_seconds
        self.max_tokens = model.config.text.max_length
        self._model = model
        self._twin: CLSPModel | None = None
        self._audio: dict[int, tuple[float, float]] = {}  # width in samples -> (forward, total) FLOPs
        self._text: dict[int, tuple[float, float]] = {}  # tokens -> (forward, total) FLOPs
        self._fits: dict[str, np.ndarray | None] = {}

    def _get_twin(self) -> CLSPModel:
        if self._twin is None:
            # Inlined architectures: nothing is fetched or loaded. The towers only: a caption decoder is not counted.
            config = dataclasses.replace(self._model.portable_config(), decoder=None)
            for side in (config.audio, config.text):
                side.gradient_checkpointing = False
            with torch.device("meta"):
                twin = CLSPModel(config, tokenizer=self._model.tokenizer)
            twin.to("meta").train()
            twin.audio.frontend = _CpuFrontend(self._model.audio.frontend)
            self._twin = twin
        return self._twin

    def _count(self, run) -> tuple[float, float]:
        """(forward, forward + backward) FLOPs of `run(twin)` and the backward of its sum."""
        twin = self._get_twin()
        with checks.disabled():
            with FlopCounterMode(display=False) as forward:
                out = run(twin)
            with FlopCounterMode(display=False) as backward:
                out.sum().backward()
        twin.zero_grad(set_to_none=True)
        return float(forward.get_total_flops()), float(forward.get_total_flops() + backward.get_total_flops())

    def audio_counts(self, seconds: float) -> tuple[float, float]:
        """(forward, forward + backward) FLOPs of one clip padded to `seconds` (capped by the tower's window)."""
        width = max(1, round(min(seconds, self.max_seconds) * self.sample_rate))
        if width not in self._audio:
            wave, lengths = torch.zeros(1, width, device="meta"), torch.full((1,), width, device="meta")
            self._audio[width] = self._count(lambda m: m.embed_audio(wave, lengths).embeds)
        return self._audio[width]

    def text_counts(self, tokens: int) -> tuple[float, float]:
        """(forward, forward + backward) FLOPs of one caption of `tokens` tokens (capped at max_length)."""
        tokens = max(1, min(int(tokens), self.max_tokens))
        if tokens not in self._text:
            ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")
            mask = torch.ones(1, tokens, dtype=torch.long, device="meta")
            self._text[tokens] = self._count(lambda m: m.embed_text(ids, mask).embeds)
        return self._text[tokens]

    def audio(self, seconds: float) -> float:
        """Forward + backward FLOPs of one clip padded to `seconds`, from the fitted quadratic."""
        return self._fitted("audio", lambda x: self.audio_counts(x)[1], min(seconds, self.max_seconds),
                            self.max_seconds)

    def text(self, tokens: int) -> float:
        """Forward + backward FLOPs of one caption of `tokens` tokens, from the fitted quadratic."""
        return self._fitted("text", lambda x: self.text_counts(round(x))[1], min(tokens, self.max_tokens),
                            self.max_tokens, integer=True)

    def _fitted(self, kind: str, exact, x: float, top: float, integer: bool = False) -> float:
        if kind not in self._fits:
            xs = [round(top * f) if integer else top * f for f in (0.25, 0.5, 1.0)]
            coeffs = np.polyfit(xs, [exact(v) for v in xs], 2)
            probe = round(top * 0.37) if integer else top * 0.37
            quadratic = abs(np.polyval(coeffs, probe) - exact(probe)) <= 1e-3 * exact(probe)
            self._fits[kind] = coeffs if quadratic else None
        coeffs = self._fits[kind]
        return float(np.polyval(coeffs, x)) if coeffs is not None else exact(x)

    def step(self, clips: int, audio_seconds: float, captions: int, tokens: int) -> float:
        """FLOPs of a training step's towers: `clips` padded to `audio_seconds`, `captions` to `tokens`."""
        return clips * self.audio(audio_seconds) + captions * self.text(tokens)


@dataclasses.dataclass(frozen=True)
class SampleFlops:
    """FLOPs of one clip and one caption: forward, and forward + backward."""

    audio_forward: float
    audio: float
    text_forward: float
    text: float

    @property
    def forward(self) -> float:
        return self.audio_forward + self.text_forward

    @property
    def total(self) -> float:
        return self.audio + self.text


def count_flops(model: CLSPModel, audio_seconds: float, caption_tokens: int) -> SampleFlops:
    """Counted FLOPs per sample: one clip of `audio_seconds` and one caption of `caption_tokens`."""
    counter = FlopCounter(model)
    return SampleFlops(*counter.audio_counts(audio_seconds), *counter.text_counts(caption_tokens))
