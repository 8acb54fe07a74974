"""A clsp model as a transformers CLAP folder: `ClapModel`, `ClapProcessor` and the zero-shot pipeline
load it without clsp.

ClapModel is HTSAT + a RoBERTa-style text model with its pooler + Linear-ReLU-Linear heads, fed by
`ClapFeatureExtractor`. A clsp model with exactly those parts is written as one (the inverse of
`CLSPModel.from_clap`, sharing its key map, clsp.clap.CLAP_PREFIXES); any other part is a one-line
`UserError` naming it, never a silently different model. After writing, the folder is loaded back
with transformers and checked against clsp on the same features (1e-5), so a mapping error cannot
pass unnoticed.

Where transformers differs by design: for clips longer than the window its extractor crops (or, for
fusion, picks chunks) at random, clsp at the centre in eval mode; with fusion, a batch without a
longer clip gets one random clip flagged `is_longer` (LAION's training trick), which clsp never does.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from clsp.clap import clsp_state_to_clap
from clsp.errors import UserError

log = logging.getLogger(__name__)

HINT = "export it with --format onnx, or keep the clsp folder (--format clsp)"
# Text towers with ClapTextModel's layout: RoBERTa embeddings (positions from the padding index + 1, token
# type 0 only), post-norm encoder layers, a tanh pooler.
ROBERTA_FAMILY = ("roberta", "xlm-roberta", "clap_text_model")
FEATURE_CHECK_ATOL = 1e-5


def check_representable(model) -> None:
    """Raise a one-line UserError naming the first part of `model` ClapModel cannot hold."""
    cfg = model.config
    if cfg.audio.tower != "htsat":
        raise UserError(f"the {cfg.audio.tower} audio tower cannot be a transformers ClapModel (its audio model "
                        "is HTSAT)", HINT)
    text_type = model.text.encoder.config.model_type
    if text_type not in ROBERTA_FAMILY:
        raise UserError(f"the {text_type} text tower cannot be a transformers ClapModel (its text model is "
                        "RoBERTa-style: positions from the padding index + 1, one token type)", HINT)
    position = getattr(model.text.encoder.config, "position_embedding_type", "absolute")
    if position not in (None, "absolute"):
        raise UserError(f"the text tower's {position} position embeddings cannot be a transformers ClapModel "
                        "(absolute positions only)", HINT)
    if cfg.text.pooling != "pooler":
        raise UserError(f"text pooling {cfg.text.pooling!r} cannot be a transformers ClapModel (it embeds the "
                        "text model's pooler output)", HINT)
    if cfg.text.lowercase or cfg.text.punctuation:
        raise UserError("caption preprocessing (text.lowercase / text.punctuation) cannot be a transformers "
                        "ClapProcessor (its tokenizer does not apply it)", HINT)
    for side, tower in (("audio", model.audio), ("text", model.text)):
        _check_head(side, getattr(model, f"{side}_head"), tower.hidden_size, cfg.head.dim)
    _check_frontend(cfg.audio)


def _check_head(side: str, head: nn.Module, width: int, dim: int) -> None:
    shape = [type(m).__name__ for m in head] if isinstance(head, nn.Sequential) else [type(head).__name__]
    if (shape != ["Linear", "ReLU", "Linear"] or tuple(head[0].weight.shape) != (dim, width)
            or tuple(head[2].weight.shape) != (dim, dim)):
        raise UserError(f"the {side} head ({' -> '.join(shape)}) cannot be a transformers ClapModel (its heads "
                        f"are Linear({width}, {dim}) -> ReLU -> Linear({dim}, {dim}))", HINT)


def _check_frontend(audio) -> None:
    if audio.max_seconds != int(audio.max_seconds):
        raise UserError(f"audio.max_seconds={audio.max_seconds} cannot be a transformers ClapFeatureExtractor "
                        "(its window is whole seconds)", HINT)
    if audio.truncation == "fusion" and audio.n_mels != 64:
        raise UserError(f"fusion with audio.n_mels={audio.n_mels} cannot be a transformers ClapFeatureExtractor "
                        "(it resizes the fused global view to 64 mel bins)", HINT)


def clap_config(model):
    """The transformers ClapConfig of a representable clsp model."""
    from transformers import ClapAudioConfig, ClapConfig, ClapTextConfig

    text_fields = {f.name for f in dataclasses.fields(ClapTextConfig)} - {"projection_dim", "model_type"}
    text = {k: v for k, v in model.text.hf_config_dict().items() if k in text_fields}
    audio = {k: v for k, v in model.audio.hf_config_dict().items() if k != "model_type"}
    # `clsp`: what ClapConfig has no field for, read back by CLSPModel.from_clap (clsp.clap) so it round-trips.
    kept = {"text_max_length": model.config.text.max_length, "logit_scale_max": model.config.head.logit_scale_max,
            "text_hf_config": model.text.hf_config_dict()}
    return ClapConfig(text_config=ClapTextConfig(**text), audio_config=ClapAudioConfig(**audio),
                      projection_dim=model.config.head.dim, logit_scale_init_value=math.exp(float(model.scale().detach())),
                      clsp=kept)


def feature_extractor(audio):
    """transformers' ClapFeatureExtractor with the settings of clsp's frontend `audio` config."""
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(
        feature_size=audio.n_mels, sampling_rate=audio.sample_rate, hop_length=audio.hop_length or 480,
        max_length_s=int(audio.max_seconds), fft_window_size=audio.n_fft or 1024, frequency_min=audio.f_min,
        frequency_max=audio.f_max, truncation=audio.truncation, padding=audio.padding)


def clap_model(model):
    """A transformers ClapModel holding `model`'s weights (eval mode, float32)."""
    from transformers import ClapModel

    check_representable(model)
    state = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    if "logit_bias" in state:
        # Kept out: ClapModel has no bias; it shifts every logit alike, so embeddings and rankings are unchanged.
        log.warning("logit_bias %.4g is not part of a ClapModel: its logits_per_audio are cosine x scale only",
                    float(state.pop("logit_bias")))
    # The exported scale is the one clsp uses: the learnable value clamped at logit_scale_max.
    state["logit_scale"] = model.scale().detach().log().float().cpu()
    clap = ClapModel(clap_config(model)).eval()
    missing, unexpected = clap.load_state_dict(clsp_state_to_clap(state), strict=False)
    missing = [k for k in missing if not k.endswith(("position_ids", "token_type_ids"))]
    if missing or unexpected:  # a part check_representable did not foresee: never write a different model
        raise UserError(f"the weights do not fit a ClapModel (missing {missing[:3]}, unexpected {unexpected[:3]})",
                        HINT)
    return clap


def export_transformers(model, out: str | Path) -> Path:
    """Write `model` as a transformers CLAP folder (config.json, model.safetensors, preprocessor and tokenizer
    files, README.md) that ClapModel / ClapProcessor / pipeline('zero-shot-audio-classification') load."""
    from transformers import ClapModel, ClapProcessor
    from transformers.utils import logging as hf_logging

    from clsp.export.card import transformers_card

    model = model.eval()
    clap = clap_model(model)
    tokenizer = copy.deepcopy(model.tokenizer)
    tokenizer.model_max_length = model.config.text.max_length  # what `truncation=True` cuts to, as clsp does
    folder = Path(out)
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # tiny files: transformers' save/load bars would be noise
    try:
        clap.save_pretrained(folder)
        extractor = feature_extractor(model.config.audio)
        ClapProcessor(extractor, tokenizer).save_pretrained(folder)
        extractor.save_pretrained(folder)  # preprocessor_config.json too, which transformers 4 reads
        check_export(model, ClapModel.from_pretrained(folder).eval())
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    transformers_card(model).save(folder / "README.md")
    return folder


@torch.no_grad()
def check_export(model, clap) -> None:
    """Compare the written ClapModel with clsp on one probe clip and caption (identical features)."""
    rate, window = model.sample_rate, int(model.config.audio.max_seconds * model.sample_rate)
    wave = 0.1 * torch.randn(1, window // 2, generator=torch.Generator().manual_seed(0))
    features, is_longer = model.audio.frontend(wave)
    ours = model.embed_audio(wave, torch.tensor([wave.shape[1]])).embeds
    theirs = F.normalize(clap.get_audio_features(input_features=features, is_longer=is_longer[:, None])
                         .pooler_output, dim=-1)
    tokens = model.tokenize(["a probe caption"])
    ours_t = model.embed_text(tokens.input_ids, tokens.attention_mask).embeds
    theirs_t = clap.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).pooler_output
    for side, a, b in (("audio", ours, theirs), ("text", ours_t, theirs_t)):
        gap = float((a - b).abs().max())
        if gap > FEATURE_CHECK_ATOL:
            raise RuntimeError(f"the exported ClapModel's {side} embedding differs from clsp's by {gap:.2e} "
                               f"(at {rate} Hz); please report this")
