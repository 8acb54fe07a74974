"""Tiny random clsp models saved with save_pretrained, for the export tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from clsp import CLSPConfig, CLSPModel

RATES = {48000: {}, 32000: {"sample_rate": 32000, "hop_length": 320, "padding": "pad"}}  # LAION-like, WavCaps-like


def tiny_htsat(fusion: bool = False, rate: int = 48000) -> CLSPConfig:
    """The tiny HTSAT + RoBERTa pair, fused or not, at a LAION (48 kHz) or WavCaps-like (32 kHz) frontend."""
    config = CLSPConfig.tiny("htsat")
    for key, value in RATES[rate].items():
        setattr(config.audio, key, value)
    if fusion:
        config.audio.truncation = "fusion"
        config.audio.hf_config = dict(config.audio.hf_config, enable_fusion=True, fusion_type="aff_2d")
    return config


def saved_model(config: CLSPConfig, folder: Path, seed: int = 0) -> tuple[CLSPModel, Path]:
    """A random model for `config` written with save_pretrained, and the model loaded back from it."""
    torch.manual_seed(seed)
    CLSPModel(config).save_pretrained(folder)
    return CLSPModel.from_pretrained(folder), folder


def clips(rate: int, seconds, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 0.1, int(round(s * rate))).astype(np.float32) for s in seconds]
