"""Audio towers (one file each) and their log-mel frontends."""

from __future__ import annotations

from torch import nn

from clsp.config import AUDIO_TOWERS, AudioConfig


def build_audio_tower(cfg: AudioConfig) -> nn.Module:
    """The tower named by `cfg.tower`; each returns (pooled, frames, frame_mask)."""
    if cfg.tower == "htsat":
        from clsp.audio.htsat import HTSATTower

        return HTSATTower(cfg)
    if cfg.tower == "whisper":
        from clsp.audio.whisper import WhisperTower

        return WhisperTower(cfg)
    raise ValueError(f"unknown audio tower {cfg.tower!r}; choose one of {AUDIO_TOWERS}")
