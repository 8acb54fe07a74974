"""Audio inputs -> what the model's `embed_audio` takes: decoded, mono, resampled, padded clips.

`CLSPModel.encode_audio` accepts a float tensor [N, T], a list of 1-D arrays/tensors of different
lengths, or file paths (anything `clsp.audio_io` decodes). Everything becomes float32 mono at the
tower's rate here, on the CPU, before the batched log-mel frontend runs on the model's device.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from clsp.audio_io import decode, resample


def load_clips(audio, sample_rate: int | None, target_rate: int) -> list[np.ndarray]:
    """Normalise every accepted audio input to a list of 1-D float32 arrays at `target_rate`."""
    if isinstance(audio, (str, os.PathLike)):
        audio = [audio]
    if isinstance(audio, torch.Tensor):
        if audio.dim() != 2:
            raise ValueError(f"audio tensor must be [N, T], got shape {tuple(audio.shape)}; use a list for ragged clips")
        audio = list(audio.detach().float().cpu().numpy())
    if isinstance(audio, np.ndarray) and audio.ndim == 2:
        audio = list(audio)
    if not isinstance(audio, (list, tuple)) or len(audio) == 0:
        raise ValueError("audio must be a tensor [N, T], or a non-empty list of arrays, tensors or file paths")
    clips = []
    for i, item in enumerate(audio):
        if isinstance(item, (str, os.PathLike)):
            if not Path(item).exists():
                raise FileNotFoundError(f"audio file not found: {item}")
            wave, rate = decode(item)
        else:
            wave = item.detach().float().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item, np.float32)
            rate = sample_rate or target_rate
            if wave.ndim != 1:
                raise ValueError(f"clip {i} must be 1-D (mono samples), got shape {wave.shape}")
        if wave.size == 0:
            raise ValueError(f"clip {i} is empty")
        if not np.isfinite(wave).all():
            raise ValueError(f"clip {i} contains NaN or infinite samples")
        clips.append(resample(wave.astype(np.float32, copy=False), rate, target_rate))
    return clips


def pad_clips(clips: list[np.ndarray], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad 1-D clips into [B, T] plus their lengths [B]."""
    lengths = torch.tensor([len(c) for c in clips], dtype=torch.long)
    wave = nn.utils.rnn.pad_sequence([torch.from_numpy(c) for c in clips], batch_first=True)
    return wave.to(device), lengths.to(device)
