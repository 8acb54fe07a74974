"""WavCaps' retrieval model (ASE), the code FusionAudio's retrieval results were produced with -> CLSPModel.

The file is `{"model": state_dict, "optimizer", "epoch", "config"}` (no `module.` prefix):
`audio_encoder.audio_enc.*` (HTSAT, see clsp.convert.htsat), `text_encoder.text_encoder.*`
(BertModel without pooler), heads `audio_proj.{0,2}` / `text_proj.{0,2}` (768 -> 1024 -> 1024) and
`temp` (logits = cos / temp, so the clsp scale is ln(1/temp)). The converted model computes what
ASE `encode_audio` / `encode_text` compute, given raw captions:

- audio: 32 kHz torchlibrosa log-mel (n_fft 1024, hop 320, 64 Slaney mels, 50-14 000 Hz, from the
  file's `config["audio_args"]` when present), clips zero-padded to 10 s (1001 frames, stretched to
  1024 by HTSAT); WavCaps pads to the longest clip of its batch instead, which is the same for
  10 s clips and makes a clip's embedding depend on its batch otherwise;
- text: WavCaps' dataset preprocessing (lower-case; each of `(),.!?;:|*"` to a space; the stock
  regex also lists the parentheses), bert-base-uncased at 30 tokens, the [CLS] hidden state.

Dropped: the mel constants (`audio_feats_extractor.*`), the AudioSet classifier, the Swin masks
and `position_ids`.
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

EXPECTED = "a WavCaps retrieval checkpoint (model weights audio_encoder.audio_enc.* / text_encoder.text_encoder.*)"
AUDIO, TEXT = "audio_encoder.audio_enc.", "text_encoder.text_encoder."
DROP = (*(AUDIO + p for p in HTSAT_DROP), *(TEXT + p for p in TEXT_DROP))
PUNCTUATION = '(),.!?;:|*"'  # WavCaps' text_preprocess: re.sub('[(,.!?;:|*\\")]', ' ', caption.lower())
MAX_TOKENS = 30  # WavCaps' TextEncoder: truncation at 30 tokens
FRONTEND = {"sr": 32000, "n_fft": 1024, "hop_length": 320, "f_min": 50, "f_max": 14000}  # mels: from the weights


def is_wavcaps(state: dict) -> bool:
    return any(k.startswith(AUDIO) for k in state)


def convert_wavcaps(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, *,
                    tokenizer: str | None = None):
    """A WavCaps ASE checkpoint as a CLSPModel (eval mode), saved to `out` when given.

    `tokenizer` defaults to the text encoder the file's config names (bert-base-uncased)."""
    model = wavcaps_model(load_checkpoint(checkpoint, EXPECTED), str(checkpoint), tokenizer=tokenizer)
    if out is not None:
        model.save_pretrained(out)
    return model


def wavcaps_model(data: dict, checkpoint: str, *, tokenizer: str | None = None):
    """The CLSPModel of an already loaded WavCaps checkpoint dict (`checkpoint` names it in errors)."""

    state = state_dict_of(data, checkpoint, "model", EXPECTED)
    if not is_wavcaps(state):
        raise UserError(f"{checkpoint}: no {AUDIO}* weights (first key {next(iter(state))!r})", f"expected {EXPECTED}")
    source_cfg = data.get("config") if isinstance(data.get("config"), dict) else {}
    audio_args = {**FRONTEND, **{k: v for k, v in (source_cfg.get("audio_args") or {}).items() if k in FRONTEND}}
    text_name = (source_cfg.get("text_encoder_args") or {}).get("type", "bert-base-uncased")
    family = "roberta" if "roberta" in str(text_name) else "bert"

    ledger = KeyLedger(state, str(checkpoint), DROP)
    audio_hf = htsat_config(ledger, AUDIO)
    check_amodel(audio_hf, None, str(checkpoint))
    text_hf, weights = text_encoder(ledger, TEXT, family, pooler=False)
    weights.update(htsat_state(ledger, AUDIO, "audio.encoder."))
    for side in ("audio", "text"):
        for i in (0, 2):
            for leaf in ("weight", "bias"):
                weights[f"{side}_head.{i}.{leaf}"] = ledger.take(f"{side}_proj.{i}.{leaf}")
    source_temp = ledger.take("temp")
    temp = float(source_temp.float().reshape(()))
    if not temp > 0:
        raise UserError(f"{checkpoint}: temperature 'temp' is {temp}, not positive", f"expected {EXPECTED}")
    scale = math.log(1.0 / temp)
    weights["logit_scale"] = source_temp.new_tensor(scale).float()
    ledger.finish()

    config = CLSPConfig.from_dict({
        "audio": {"_target_": AUDIO_TOWERS["htsat"], "hf_config": audio_hf, "sample_rate": int(audio_args["sr"]),
                  "n_mels": audio_hf["num_mel_bins"], "max_seconds": 10.0, "truncation": "rand_trunc",
                  "padding": "pad", "f_min": float(audio_args["f_min"]), "f_max": float(audio_args["f_max"]),
                  "n_fft": int(audio_args["n_fft"]), "hop_length": int(audio_args["hop_length"])},
        "text": {"pretrained": None, "hf_config": text_hf, "tokenizer": None, "pooling": "cls",
                 "max_length": MAX_TOKENS, "lowercase": True, "punctuation": PUNCTUATION},
        # WavCaps never clamps temp: keep 1/temp even where it passes LAION's 100.
        "head": {"dim": int(weights["audio_head.2.weight"].shape[0]), "logit_scale_init": scale,
                 "logit_scale_max": max(math.log(100.0), scale)},
    })
    tok = load_source_tokenizer(tokenizer or str(text_name), text_hf["vocab_size"], family, str(checkpoint))
    model = CLSPModel(config, tokenizer=tok)
    model.load_state(weights, source=str(checkpoint))
    model.source_info = {"family": "wavcaps", "temp": temp}
    return model.eval()
