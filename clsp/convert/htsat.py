"""HTSAT weights in the original (Ke Chen's) layout -> transformers' `ClapAudioModel`, and the
AudioSet-pretrained HTSAT converter.

LAION-CLAP (`audio_branch.*`), WavCaps (`audio_encoder.audio_enc.*`) and the AudioSet HTSAT
Lightning checkpoint (`sed_model.*`) all hold the same module. The renames are those of
transformers' `convert_clap_original_pytorch_to_hf.py` (see REFERENCE.md), applied to whole name
segments, plus the split of every fused `qkv` projection into query, key and value. The
architecture (width, depths, heads, window, MLP ratio, mel bins, fusion) is read off the weights.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import ClapAudioConfig, ClapAudioModel

from clsp.atomic import atomic_path, write_json_atomic
from clsp.audio.htsat import TOWER_CONFIG_KEY
from clsp.config import AUDIO_TOWERS, AudioConfig, portable_hf_config
from clsp.convert.checkpoint import KeyLedger, load_checkpoint, state_dict_of
from clsp.errors import UserError

# Source keys (after the module prefix) no clsp weight comes from: torchlibrosa / WavCaps mel
# constants (the frontend rebuilds them from the config), the AudioSet classifier (`tscam_conv`,
# `head`), and the Swin shift masks (rebuilt from the geometry).
HTSAT_DROP = ("spectrogram_extractor.*", "logmel_extractor.*", "audio_feats_extractor.*", "tscam_conv.*", "head.*",
              "layers.*.blocks.*.attn_mask")

# Released HTSAT sizes (`--amodel`): patch embedding width and blocks per stage.
AMODELS = {"HTSAT-tiny": (96, [2, 2, 6, 2]), "HTSAT-base": (128, [2, 2, 12, 2])}

# Swin block modules (weights and biases under them) and the attention's own tensors.
_BLOCK = {"norm1": "layernorm_before", "norm2": "layernorm_after", "attn.proj": "attention.output.dense",
          "mlp.fc1": "intermediate.dense", "mlp.fc2": "output.dense"}
_ATTN = {"attn.relative_position_bias_table": "attention.self.relative_position_bias_table",
         "attn.relative_position_index": "attention.self.relative_position_index"}

# The AudioSet HTSAT's features (its training config): 32 kHz, 1024-point FFT, hop 320, 64 mels, 50-14 000 Hz.
AUDIOSET_FRONTEND = {"sample_rate": 32000, "n_mels": 64, "max_seconds": 10.0, "truncation": "rand_trunc",
                     "padding": "pad", "f_min": 50.0, "f_max": 14000.0, "n_fft": 1024, "hop_length": 320}


def htsat_config(ledger: KeyLedger, prefix: str) -> dict:
    """transformers ClapAudioConfig fields read off the weights under `prefix`."""
    def shape(name: str) -> tuple[int, ...]:
        return ledger.shape(prefix + name, "expected an HTSAT audio encoder")

    embed, _, patch, _ = shape("patch_embed.proj.weight")
    stages = sorted({int(m.group(1)) for k in ledger.keys(prefix + "layers.")
                     if (m := re.match(re.escape(prefix) + r"layers\.(\d+)\.", k))})
    depths, heads = [], []
    for i in stages:
        blocks = {int(m.group(1)) for k in ledger.keys(f"{prefix}layers.{i}.blocks.")
                  if (m := re.match(re.escape(f"{prefix}layers.{i}.blocks.") + r"(\d+)\.", k))}
        depths.append(len(blocks))
        heads.append(shape(f"layers.{i}.blocks.0.attn.relative_position_bias_table")[1])
    table = shape("layers.0.blocks.0.attn.relative_position_bias_table")[0]
    window = (math.isqrt(table) + 1) // 2
    mlp_ratio = shape("layers.0.blocks.0.mlp.fc1.weight")[0] / embed
    fusion = prefix + "patch_embed.fusion_model.local_att.0.weight" in ledger
    return {
        "patch_embeds_hidden_size": embed, "patch_size": patch, "depths": depths, "num_attention_heads": heads,
        "hidden_size": shape("norm.weight")[0], "window_size": window, "mlp_ratio": mlp_ratio,
        "num_mel_bins": shape("bn0.weight")[0], "spec_size": 256, "enable_fusion": fusion,
        "fusion_type": "aff_2d" if fusion else None,
        # The original HTSAT's training-time rates: no dropout, stochastic depth 0.1.
        "hidden_dropout_prob": 0.0, "drop_path_rate": 0.1,
    }


def check_amodel(hf: dict, amodel: str | None, source: str) -> str:
    """The released size the weights are (HTSAT-tiny / HTSAT-base / 'custom'); `amodel` must agree."""
    found = next((name for name, (embed, depths) in AMODELS.items()
                  if hf["patch_embeds_hidden_size"] == embed and hf["depths"] == depths), "custom")
    if amodel is not None:
        if amodel not in AMODELS:
            raise UserError(f"unknown --amodel {amodel!r}", f"choose one of {sorted(AMODELS)}")
        if found != amodel:
            raise UserError(f"{source}: the weights are not {amodel} (width {hf['patch_embeds_hidden_size']}, "
                            f"depths {hf['depths']})", "drop --amodel to use what the weights hold")
    return found


def htsat_state(ledger: KeyLedger, prefix: str, out_prefix: str) -> dict[str, torch.Tensor]:
    """The HTSAT weights under `prefix`, renamed onto ClapAudioModel (keys start with `out_prefix`)."""
    out = {}
    enc = out_prefix + "audio_encoder."
    for key in ledger.keys(prefix):
        name = key[len(prefix):]
        m = re.match(r"layers\.(\d+)\.blocks\.(\d+)\.(.+)$", name)
        if m:
            block, rest = f"layers.{m.group(1)}.blocks.{m.group(2)}.", m.group(3)
            if rest.startswith("attn.qkv."):
                # One [3C, C] projection -> query, key, value (the order of the original reshape).
                for part, tensor in zip(("query", "key", "value"), ledger.take(key).chunk(3, dim=0)):
                    out[f"{enc}{block}attention.self.{part}.{rest.split('.')[-1]}"] = tensor.clone()
                continue
            module, _, leaf = rest.rpartition(".")
            if module in _BLOCK:
                out[f"{enc}{block}{_BLOCK[module]}.{leaf}"] = ledger.take(key)
            elif rest in _ATTN:
                out[f"{enc}{block}{_ATTN[rest]}"] = ledger.take(key)
            continue
        if name.startswith("bn0."):
            out[enc + "batch_norm." + name[4:]] = ledger.take(key)
        elif name.startswith(("patch_embed.", "norm.")) or re.match(r"layers\.\d+\.downsample\.", name):
            out[enc + name] = ledger.take(key)
    return out


def convert_htsat(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """AudioSet-pretrained HTSAT (Lightning checkpoint, `sed_model.*`) -> an audio tower folder.

    The folder (config.json with `clsp_audio`, model.safetensors) is what `audio.pretrained` takes;
    the tower then runs the AudioSet HTSAT's frontend (32 kHz, hop 320)."""


    expected = "an AudioSet-pretrained HTSAT Lightning checkpoint (state_dict keys sed_model.*)"
    data = load_checkpoint(checkpoint, expected)
    state = state_dict_of(data, checkpoint, "state_dict", expected)
    if not any(k.startswith("sed_model.") for k in state):
        raise UserError(f"{checkpoint}: no sed_model.* weights (first key {next(iter(state))!r})", f"expected {expected}")
    ledger = KeyLedger(state, str(checkpoint), drop=["sed_model." + p for p in HTSAT_DROP])
    hf = htsat_config(ledger, "sed_model.")
    weights = htsat_state(ledger, "sed_model.", "")
    ledger.finish()
    model = ClapAudioModel(ClapAudioConfig(**hf))
    model.load_state_dict(weights, strict=True)

    audio = AudioConfig(_target_=AUDIO_TOWERS["htsat"], hf_config=portable_hf_config(model.config), **AUDIOSET_FRONTEND)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "model.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp), metadata={"format": "pt"})
    write_json_atomic(folder / "config.json", {TOWER_CONFIG_KEY: dataclasses.asdict(audio), "source": str(checkpoint)},
                      indent=2, sort_keys=False)
    return folder
