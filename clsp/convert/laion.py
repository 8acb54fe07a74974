"""LAION-CLAP original training checkpoints (`630k-*.pt`, `630k-audioset-*.pt`, the fusion variants,
the HTSAT-base music/speech releases) -> CLSPModel.

The file is `{"epoch", "name", "state_dict", "optimizer", ...}` with DDP `module.` prefixes:
`audio_branch.*` (HTSAT, see clsp.convert.htsat), `text_branch.*` (RobertaModel with pooler),
heads `audio_projection.{0,2}` / `text_projection.{0,2}`, scales `logit_scale_a` / `logit_scale_t`.
The converted model computes what `CLAP_Module.get_audio_embedding_from_data` /
`get_text_embedding` compute: 48 kHz, repeat-padded 10 s windows, Slaney log-mel (HTK for fusion),
RoBERTa pooler output at 77 tokens, Linear-ReLU-Linear to 512, L2; the scale is exp(logit_scale_a).

Dropped (unused for embeddings): the torchlibrosa constants, the AudioSet classifier, the Swin
masks, `audio_transform` / `text_transform` (MLPs only the training loss used), `logit_scale_t`
(clsp has one scale) and `text_branch.embeddings.position_ids`.
"""

from __future__ import annotations

import math
import os

from clsp.config import AUDIO_TOWERS, CLSPConfig
from clsp.convert.checkpoint import KeyLedger, load_checkpoint, state_dict_of
from clsp.convert.htsat import HTSAT_DROP, check_amodel, htsat_config, htsat_state
from clsp.convert.text import TEXT_DROP, load_source_tokenizer, text_encoder
from clsp.errors import UserError
from clsp.model import CLSPModel

EXPECTED = "a LAION-CLAP training checkpoint (state_dict with audio_branch.* / text_branch.* weights)"
DROP = (*("audio_branch." + p for p in HTSAT_DROP), *("text_branch." + p for p in TEXT_DROP),
        "audio_transform.*", "text_transform.*", "logit_scale_t")


def is_laion(state: dict) -> bool:
    return any(k.removeprefix("module.").startswith("audio_branch.") for k in state)


def convert_laion(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, *,
                  tokenizer: str = "roberta-base", amodel: str | None = None, fusion: bool | None = None):
    """A LAION-CLAP `.pt` as a CLSPModel (eval mode), saved to `out` when given.

    `amodel` (HTSAT-tiny / HTSAT-base) and `fusion` are read off the weights; when given they must agree."""
    model = laion_model(load_checkpoint(checkpoint, EXPECTED), str(checkpoint), tokenizer=tokenizer, amodel=amodel,
                        fusion=fusion)
    if out is not None:
        model.save_pretrained(out)
    return model


def laion_model(data: dict, checkpoint: str, *, tokenizer: str = "roberta-base", amodel: str | None = None,
                fusion: bool | None = None):
    """The CLSPModel of an already loaded LAION-CLAP checkpoint dict (`checkpoint` names it in errors)."""

    raw = state_dict_of(data, checkpoint, "state_dict", EXPECTED)
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    if not is_laion(state):
        raise UserError(f"{checkpoint}: no audio_branch.* weights (first key {next(iter(raw))!r})", f"expected {EXPECTED}")
    ledger = KeyLedger(state, str(checkpoint), DROP)
    audio_hf = htsat_config(ledger, "audio_branch.")
    size = check_amodel(audio_hf, amodel, str(checkpoint))
    if fusion is not None and fusion != audio_hf["enable_fusion"]:
        have = "has" if audio_hf["enable_fusion"] else "has no"
        raise UserError(f"{checkpoint}: --{'' if fusion else 'no-'}fusion given but the checkpoint {have} fusion "
                        "weights (patch_embed.fusion_model)", "drop the flag to use what the weights hold")
    text_hf, weights = text_encoder(ledger, "text_branch.", "roberta", pooler=True)
    weights.update(htsat_state(ledger, "audio_branch.", "audio.encoder."))
    for side in ("audio", "text"):
        for i in (0, 2):
            for leaf in ("weight", "bias"):
                weights[f"{side}_head.{i}.{leaf}"] = ledger.take(f"{side}_projection.{i}.{leaf}")
    logit_scale = ledger.take("logit_scale_a").float().reshape(())
    weights["logit_scale"] = logit_scale
    ledger.finish()

    fused = audio_hf["enable_fusion"]
    config = CLSPConfig.from_dict({
        "audio": {"_target_": AUDIO_TOWERS["htsat"], "hf_config": audio_hf, "sample_rate": 48000, "n_mels": audio_hf["num_mel_bins"],
                  "max_seconds": 10.0, "truncation": "fusion" if fused else "rand_trunc", "padding": "repeatpad",
                  "f_min": 50.0, "f_max": 14000.0, "n_fft": 1024, "hop_length": 480},
        "text": {"pretrained": None, "hf_config": text_hf, "tokenizer": None, "pooling": "pooler", "max_length": 77},
        "head": {"dim": int(weights["audio_head.2.weight"].shape[0]), "logit_scale_init": float(logit_scale),
                 "logit_scale_max": max(math.log(100.0), float(logit_scale))},
    })
    tok = load_source_tokenizer(tokenizer, text_hf["vocab_size"], "roberta", str(checkpoint))
    model = CLSPModel(config, tokenizer=tok)
    model.load_state(weights, source=str(checkpoint))
    model.source_info = {"family": "laion", "amodel": size, "fusion": fused}
    return model.eval()
