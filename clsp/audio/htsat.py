"""HTSAT general-audio tower: transformers' `ClapAudioModel` (the LAION-CLAP audio encoder).

48 kHz, 10 s windows, 64-bin log-mel. Shorter clips are repeat-padded, longer ones
randomly cropped ("rand_trunc") or fused ("fusion": a shrunk global view + three local
chunks, flagged `is_longer`), all done by the frontend on the model's device.
"""

from __future__ import annotations

import torch
from torch import nn

from clsp.audio.frontend import ClapFrontend
from clsp.config import AudioConfig, portable_hf_config
from clsp.errors import load_pretrained


def _build_model(cfg: AudioConfig) -> nn.Module:
    from transformers import ClapAudioConfig, ClapAudioModel, ClapModel

    if cfg.pretrained is not None:
        # HTSAT weights ship inside CLAP checkpoints (e.g. laion/clap-htsat-unfused).
        return load_pretrained("model.audio.pretrained", cfg.pretrained, ClapModel.from_pretrained).audio_model
    hf = {k: v for k, v in cfg.hf_config.items() if k != "model_type"}
    hf.setdefault("num_mel_bins", cfg.n_mels)
    hf.setdefault("enable_fusion", cfg.truncation == "fusion")
    if hf["enable_fusion"]:
        hf.setdefault("fusion_type", "aff_2d")
    return ClapAudioModel(ClapAudioConfig(**hf))


class HTSATTower(nn.Module):
    """`forward(waveforms, lengths)` -> (pooled [B, H], frames [B, T', H], mask [B, T'])."""

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.cfg = cfg
        self.model = _build_model(cfg)
        hf = self.model.config
        if cfg.truncation == "fusion" and not hf.enable_fusion:
            raise ValueError("audio.truncation='fusion' needs an HTSAT built with enable_fusion=True")
        self.hidden_size = int(hf.hidden_size)
        self.frontend = ClapFrontend(
            sample_rate=cfg.sample_rate,
            n_mels=cfg.n_mels,
            f_min=cfg.f_min,
            f_max=cfg.f_max,
            max_seconds=cfg.max_seconds,
            truncation=cfg.truncation,
            padding=cfg.padding,
            **{k: v for k, v in (("n_fft", cfg.n_fft), ("hop_length", cfg.hop_length)) if v is not None},
        )
        if cfg.gradient_checkpointing:
            # ClapAudioModel has no built-in checkpointing; checkpoint each Swin stage instead.
            for stage in self.model.audio_encoder.layers:
                stage.forward = _checkpointed(stage.forward)
        if cfg.freeze:
            self.model.requires_grad_(False)

    def hf_config_dict(self) -> dict:
        return portable_hf_config(self.model.config)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        features, is_longer = self.frontend(waveforms, lengths)
        out = self.model(input_features=features, is_longer=is_longer.view(-1, 1))
        # last_hidden_state is [B, H, freq groups, time]: average frequency to get frame tokens.
        frames = out.last_hidden_state.mean(dim=2).transpose(1, 2)
        mask = torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
        return out.pooler_output, frames, mask


def _checkpointed(forward):
    from torch.utils.checkpoint import checkpoint

    def wrapped(*args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return wrapped
