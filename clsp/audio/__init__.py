"""Audio towers (one file each) and their log-mel frontends."""

from __future__ import annotations

import importlib

from torch import nn

from clsp.config import AudioConfig


def build_audio_tower(cfg: AudioConfig) -> nn.Module:
    """The tower class `cfg._target_` names, built from `cfg`; each returns (pooled, frames, frame_mask)."""
    return locate(cfg._target_, "model.audio._target_")(cfg)


def locate(path: str, key: str) -> type:
    """The class at import path `path` (a config's `_target_`); a one-line error naming `key` otherwise."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"{key}={path!r} is not an importable class ({exc})") from None
