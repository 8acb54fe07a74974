"""The recipes' tower pairs at full size, randomly initialised (nothing is downloaded), for the benchmarks.

    fusionaudio: HTSAT-base + RoBERTa-base, 10 s at 48 kHz, captions up to 256 tokens
    fcaps:       Whisper-base encoder + RoBERTa-base, up to 30 s at 16 kHz, 256 tokens
    laion_clap:  HTSAT-tiny + RoBERTa-base, 10 s at 48 kHz, 77 tokens (LAION-CLAP's geometry)
"""

from __future__ import annotations

import torch
import yaml

from benchmarks.model import WHISPER_BASE
from clsp.config import CLSPConfig
from clsp.model import CLSPModel
from clsp.resources import config_dir

ROBERTA_BASE = {"model_type": "roberta", "vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12,
                "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514,
                "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2, "type_vocab_size": 1,
                "layer_norm_eps": 1e-5}
# (model preset, caption tokens, audio seconds) per recipe.
RECIPES = {"fusionaudio": ("htsat_base_roberta", 256, 10.0), "fcaps": ("whisper_base_roberta", 256, 30.0),
           "laion_clap": ("htsat_tiny_roberta", 77, 10.0)}


def preset(name: str) -> dict:
    """configs/model/<name>.yaml as a dict, read with PyYAML (a transformers dependency), not CLSPConfig.preset's
    OmegaConf: GPU machines may lack the latter."""
    return yaml.safe_load((config_dir() / "model" / f"{name}.yaml").read_text())


def recipe_config(name: str, attn_implementation: str = "sdpa", tokens: int | None = None) -> CLSPConfig:
    """The recipe's model config with random towers of the pretrained geometry."""
    model, default_tokens, _ = RECIPES[name]
    cfg = preset(model)
    cfg["text"].update(pretrained=None, tokenizer="clsp:tiny-bpe", hf_config=dict(ROBERTA_BASE),
                       max_length=tokens or default_tokens, attn_implementation=attn_implementation)
    cfg["audio"]["attn_implementation"] = attn_implementation
    if cfg["audio"]["_target_"].endswith("WhisperTower"):  # presets name towers by `_target_`
        cfg["audio"].update(pretrained=None, hf_config=dict(WHISPER_BASE))
    return CLSPConfig.from_dict(cfg)


def recipe_model(name: str, device: str = "cpu", attn_implementation: str = "sdpa",
                 tokens: int | None = None) -> CLSPModel:
    """`recipe_config`'s model on `device` ("meta": shapes only, for counting FLOPs)."""
    with torch.device(device):
        model = CLSPModel(recipe_config(name, attn_implementation, tokens))
    return model.to(device)
