"""HTSAT general-audio tower: transformers' `ClapAudioModel` (the LAION-CLAP audio encoder).

48 kHz, 10 s windows, 64-bin log-mel by default (LAION-CLAP); any sample rate and hop (WavCaps
and the AudioSet HTSAT: 32 kHz, hop 320). Shorter clips are repeat-padded or zero-padded, longer
ones randomly cropped ("rand_trunc") or fused ("fusion": a shrunk global view + three local
chunks, flagged `is_longer`), all done by the frontend on the model's device.

`audio.pretrained` starts the tower from weights: a converted audio tower folder
(`python -m clsp.convert htsat`, config.json `clsp_audio`), a clsp model folder (its `audio.*`
weights) or a transformers CLAP folder. The tower then takes the source's architecture and
frontend settings, since weights only work on the features they were trained on; the resolved
settings are the tower's `cfg` (and so the model's config, which the data pipeline follows).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import ClapAudioConfig, ClapAudioModel, ClapModel

from clsp.audio.frontend import ClapFrontend
from clsp.audio.swin_attention import set_window_attention
from clsp.clap import clap_config_to_clsp, read_preprocessor
from clsp.config import AUDIO_TOWERS, AudioConfig, portable_hf_config
from clsp.errors import UserError, pretrained_error
from clsp.folders import CONFIG_NAME, WEIGHTS_NAME, read_config, resolve_folder, upgrade_state

log = logging.getLogger(__name__)

TOWER_CONFIG_KEY = "clsp_audio"  # config.json of a converted audio tower folder
# The fields a pretrained source decides: the weights were trained on exactly these features.
SOURCE_FIELDS = ("sample_rate", "n_mels", "max_seconds", "truncation", "padding", "f_min", "f_max", "n_fft",
                 "hop_length")


def _pretrained(cfg: AudioConfig) -> tuple[AudioConfig, nn.Module]:
    """(cfg with the source's architecture and frontend, ClapAudioModel with the source's weights)."""


    local = str(cfg.pretrained).startswith((".", "/", "~")) or Path(cfg.pretrained).exists()
    try:
        folder = resolve_folder(cfg.pretrained)
    except (FileNotFoundError, ValueError) as exc:
        if not local:  # a hub id that could not be fetched
            raise pretrained_error("model.audio.pretrained", str(cfg.pretrained), exc) from None
        folder = Path(cfg.pretrained)
    try:
        raw = read_config(folder)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"model.audio.pretrained: {exc}", "pass a folder written by python -m clsp.convert (htsat, laion "
                        "or wavcaps), a clsp model folder or a transformers CLAP folder") from None
    if raw.get("model_type") == "clap":  # transformers CLAP: the frontend is in its (pre)processor config

        clap = ClapModel.from_pretrained(str(folder))
        source = clap_config_to_clsp(clap.config, read_preprocessor(folder)).audio
        return _adopt(cfg, dataclasses.asdict(source)), clap.audio_model
    if TOWER_CONFIG_KEY in raw:
        source, prefix = raw[TOWER_CONFIG_KEY], ""
    elif "clsp_config" in raw:
        source, prefix = raw["clsp_config"].get("audio", {}), "audio.encoder."
    else:
        raise UserError(f"model.audio.pretrained {cfg.pretrained}: {folder / CONFIG_NAME} is neither a converted audio "
                        "tower, a clsp model nor a transformers CLAP config",
                        "convert the checkpoint first: python -m clsp.convert {htsat,laion,wavcaps} CKPT OUT")
    tower = source.get("tower") or source.get("_target_", AUDIO_TOWERS["htsat"])
    if tower not in ("htsat", AUDIO_TOWERS["htsat"]):
        raise UserError(f"model.audio.pretrained {cfg.pretrained} holds a {tower} tower, not htsat")
    hf = {k: v for k, v in source.get("hf_config", {}).items() if k != "model_type"}
    model = ClapAudioModel(ClapAudioConfig(**hf))
    weights = upgrade_state(load_file(str(folder / WEIGHTS_NAME)))  # a clsp folder of an older version too
    state = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"model.audio.pretrained {cfg.pretrained}: weights do not fit the HTSAT its config describes "
                        f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return _adopt(cfg, source), model


def _adopt(cfg: AudioConfig, source: dict) -> AudioConfig:
    changed = {k: source[k] for k in SOURCE_FIELDS if k in source and source[k] != getattr(cfg, k)}
    if changed:
        log.info("audio.pretrained %s sets the frontend: %s", cfg.pretrained, changed)
    return dataclasses.replace(cfg, **changed)


def _build_model(cfg: AudioConfig) -> nn.Module:

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
        if cfg.pretrained is not None:
            cfg, self.encoder = _pretrained(cfg)
            # Record the architecture actually loaded (the config may name another size).
            cfg = dataclasses.replace(cfg, hf_config=portable_hf_config(self.encoder.config))
        else:
            self.encoder = _build_model(cfg)
        self.cfg = cfg
        set_window_attention(self.encoder, cfg.attn_implementation)
        hf = self.encoder.config
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
            for stage in self.encoder.audio_encoder.layers:
                stage.forward = _checkpointed(stage.forward)
        if cfg.freeze:
            self.encoder.requires_grad_(False)

    def hf_config_dict(self) -> dict:
        return portable_hf_config(self.encoder.config)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        features, is_longer = self.frontend(waveforms, lengths)
        out = self.encoder(input_features=features, is_longer=is_longer.view(-1, 1))
        # last_hidden_state is [B, H, freq groups, time]: average frequency to get frame tokens.
        frames = out.last_hidden_state.mean(dim=2).transpose(1, 2)
        mask = torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
        return out.pooler_output, frames, mask


def _checkpointed(forward):

    def wrapped(*args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint(forward, *args, use_reentrant=False, **kwargs)
        return forward(*args, **kwargs)

    return wrapped
