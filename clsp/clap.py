"""Import a transformers-format CLAP checkpoint (HTSAT + RoBERTa-like text + heads + scales).

`CLSPModel.from_clap` and the HTSAT tower (which can start from a transformers CLAP folder,
`audio.pretrained`) both use this, so it sits below the model: it takes the model class as an
argument instead of importing it.

The transformers `ClapModel` keeps two scales (`logit_scale_a`, `logit_scale_t`); clsp has
one, taken from the audio side. Feature-extraction settings come from the checkpoint's
preprocessor_config.json, so the frontend sees audio exactly as the checkpoint was trained.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from clsp.config import AUDIO_TOWERS, CLSPConfig, portable_hf_config


def clap_config_to_clsp(clap_config, preprocessor: dict, logit_scale: float | None = None) -> CLSPConfig:
    """Translate a transformers ClapConfig (+ its feature-extractor settings) into a CLSPConfig.

    `logit_scale` is the checkpoint's trained `logit_scale_a` (default: the config's initial value)."""
    audio_hf = portable_hf_config(clap_config.audio_config)
    text_hf = portable_hf_config(clap_config.text_config)
    text_hf["model_type"] = "clap_text_model"
    fusion = bool(audio_hf.get("enable_fusion"))
    truncation = preprocessor.get("truncation", "fusion" if fusion else "rand_trunc")
    if truncation == "fusion" and not fusion:
        truncation = "rand_trunc"  # an unfused HTSAT cannot take the 4-channel fusion input
    audio = {
        "_target_": AUDIO_TOWERS["htsat"],
        "hf_config": audio_hf,
        "sample_rate": int(preprocessor.get("sampling_rate", 48000)),
        "n_mels": int(preprocessor.get("feature_size", audio_hf.get("num_mel_bins", 64))),
        "max_seconds": float(preprocessor.get("max_length_s", 10)),
        "truncation": truncation,
        "padding": preprocessor.get("padding", "repeatpad"),
        "f_min": float(preprocessor.get("frequency_min", 50.0)),
        "f_max": float(preprocessor.get("frequency_max", 14000.0)),
        "n_fft": int(preprocessor.get("fft_window_size", 1024)),
        "hop_length": int(preprocessor.get("hop_length", 480)),
    }
    text = {"pretrained": None, "hf_config": text_hf, "tokenizer": None, "pooling": "pooler", "max_length": 77}
    # ClapConfig keeps the scale itself (1/0.07); its parameter, like clsp's, is the log.
    scale = math.log(clap_config.logit_scale_init_value) if logit_scale is None else float(logit_scale)
    head = {"dim": int(clap_config.projection_dim), "logit_scale_init": scale,
            "logit_scale_max": max(math.log(100.0), scale)}
    return CLSPConfig.from_dict({"audio": audio, "text": text, "head": head})


def clap_state_to_clsp(state: dict) -> dict:
    """Rename ClapModel weights to CLSPModel's."""
    renames = {
        "audio_model.": "audio.model.",
        "text_model.": "text.encoder.",
        "audio_projection.linear1.": "audio_head.0.",
        "audio_projection.linear2.": "audio_head.2.",
        "text_projection.linear1.": "text_head.0.",
        "text_projection.linear2.": "text_head.2.",
    }
    out = {}
    for key, value in state.items():
        if key == "logit_scale_a":
            out["logit_scale"] = value
            continue
        if key == "logit_scale_t":
            continue
        for old, new in renames.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            raise ValueError(f"unexpected weight {key!r} in the CLAP checkpoint")
    return out


def import_clap(model_cls, folder: Path):
    """Build a `model_cls` (CLSPModel) from a transformers CLAP checkpoint folder."""
    from transformers import AutoTokenizer, ClapModel

    config_file = folder / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{folder} is not a CLAP checkpoint: no config.json")
    if json.loads(config_file.read_text()).get("model_type") != "clap":
        raise ValueError(f"{folder} is not a transformers CLAP checkpoint (config model_type is not 'clap')")
    clap = ClapModel.from_pretrained(str(folder))
    pre_file = folder / "preprocessor_config.json"
    preprocessor = json.loads(pre_file.read_text()) if pre_file.exists() else {}
    config = clap_config_to_clsp(clap.config, preprocessor, float(clap.logit_scale_a))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = model_cls(config, tokenizer=tokenizer)
    model.load_state(clap_state_to_clsp(clap.state_dict()), source=str(folder))
    return model.eval()
