"""Audio inputs -> what the model's `embed_audio` takes: decoded, mono, resampled, padded clips.

`CLSPModel.encode_audio` accepts a float tensor [N, T], a list of 1-D arrays/tensors of different
lengths, or file paths (anything `clsp.audio_io` decodes). Everything becomes float32 mono at the
tower's rate here, on the CPU, before the batched log-mel frontend runs on the model's device.
Integer PCM (int8, int16, int32, uint8 arrays or tensors) is scaled to [-1, 1] as soundfile reads it
(int16 / 32768); other integer types are an error rather than audio at the wrong scale.
`split_windows` cuts long clips into the tower's windows, for `encode_audio(..., long="window")`.
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
        audio = list(_numpy(audio))
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
            wave = to_float(_numpy(item) if isinstance(item, torch.Tensor) else np.asarray(item), i)
            rate = sample_rate or target_rate
            if wave.ndim != 1:
                raise ValueError(f"clip {i} must be 1-D (mono samples), got shape {wave.shape}")
        if wave.size == 0:
            raise ValueError(f"clip {i} is empty")
        if not np.isfinite(wave).all():
            raise ValueError(f"clip {i} contains NaN or infinite samples")
        clips.append(resample(wave.astype(np.float32, copy=False), rate, target_rate))
    return clips


# Integer PCM: (offset, full scale). int16 / 32768 lies in [-1, 1), as soundfile reads 16-bit files.
_PCM = {np.dtype(np.int8): (0, 2**7), np.dtype(np.int16): (0, 2**15), np.dtype(np.int32): (0, 2**31),
        np.dtype(np.uint8): (128, 2**7)}


def to_float(wave: np.ndarray, index: int = 0) -> np.ndarray:
    """float32 samples: floats as they are, integer PCM scaled to [-1, 1]; any other type is an error."""
    if wave.dtype.kind == "f":
        return wave.astype(np.float32, copy=False)
    if wave.dtype in _PCM:
        offset, full = _PCM[wave.dtype]
        return ((wave.astype(np.float64) - offset) / full).astype(np.float32)
    raise ValueError(f"clip {index} has samples of type {wave.dtype}: give floats in [-1, 1] or integer PCM "
                     "(int8, int16, int32, uint8)")


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    return (tensor.float() if tensor.is_floating_point() else tensor).numpy()  # numpy has no bfloat16


def split_windows(clips: list[np.ndarray], size: int) -> tuple[list[np.ndarray], list[int]]:
    """Clips longer than `size` samples as consecutive windows of `size` covering all of them, the last
    one ending at the clip's end (overlapping its neighbour rather than short); shorter clips whole.
    Returns the windows and, for each, the index of its clip."""
    windows, owner = [], []
    for i, clip in enumerate(clips):
        starts = [0] if len(clip) <= size else [*range(0, len(clip) - size, size), len(clip) - size]
        windows += [clip[start : start + size] for start in starts]
        owner += [i] * len(starts)
    return windows, owner


def pad_clips(clips: list[np.ndarray], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad 1-D clips into [B, T] plus their lengths [B]."""
    lengths = torch.tensor([len(c) for c in clips], dtype=torch.long)
    wave = nn.utils.rnn.pad_sequence([torch.from_numpy(c) for c in clips], batch_first=True)
    return wave.to(device), lengths.to(device)
