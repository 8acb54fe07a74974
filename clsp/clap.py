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

from transformers import AutoTokenizer, ClapModel

from clsp.config import AUDIO_TOWERS, CLSPConfig, portable_hf_config


def clap_config_to_clsp(clap_config, preprocessor: dict, logit_scale: float | None = None) -> CLSPConfig:
    """Translate a transformers ClapConfig (+ its feature-extractor settings) into a CLSPConfig.

    `logit_scale` is the checkpoint's trained `logit_scale_a` (default: the config's initial value)."""
    # A folder clsp exported keeps what ClapConfig has no field for (`clsp`): the text tower's own config
    # (RoBERTa's, same weights as ClapTextModel), max length and scale clamp. Other folders are LAION's.
    kept = getattr(clap_config, "clsp", None) or {}
    audio_hf = portable_hf_config(clap_config.audio_config)
    text_hf = dict(kept.get("text_hf_config") or portable_hf_config(clap_config.text_config))
    text_hf.setdefault("model_type", "clap_text_model")
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
    text = {"pretrained": None, "hf_config": text_hf, "tokenizer": None, "pooling": "pooler",
            "max_length": int(kept.get("text_max_length", 77))}
    # ClapConfig keeps the scale itself (1/0.07); its parameter, like clsp's, is the log.
    scale = math.log(clap_config.logit_scale_init_value) if logit_scale is None else float(logit_scale)
    head = {"dim": int(clap_config.projection_dim), "logit_scale_init": scale,
            "logit_scale_max": max(float(kept.get("logit_scale_max", math.log(100.0))), scale)}
    return CLSPConfig.from_dict({"audio": audio, "text": text, "head": head})


# ClapModel weight prefixes -> CLSPModel's: from_clap reads this map left to right, the transformers
# export (clsp.export) right to left.
CLAP_PREFIXES = {
    "audio_model.": "audio.encoder.",
    "text_model.": "text.encoder.",
    "audio_projection.linear1.": "audio_head.0.",
    "audio_projection.linear2.": "audio_head.2.",
    "text_projection.linear1.": "text_head.0.",
    "text_projection.linear2.": "text_head.2.",
}


def _renamed(state: dict, prefixes: dict[str, str], source: str) -> dict:
    out = {}
    for key, value in state.items():
        for old, new in prefixes.items():
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            raise ValueError(f"unexpected weight {key!r} in the {source}")
    return out


def clap_state_to_clsp(state: dict) -> dict:
    """Rename ClapModel weights to CLSPModel's (the scale is logit_scale_a's)."""
    scales = {k: state[k] for k in ("logit_scale_a", "logit_scale_t") if k in state}
    out = _renamed({k: v for k, v in state.items() if k not in scales}, CLAP_PREFIXES, "CLAP checkpoint")
    if "logit_scale_a" in scales:
        out["logit_scale"] = scales["logit_scale_a"]
    return out


def clsp_state_to_clap(state: dict) -> dict:
    """Rename CLSPModel weights to ClapModel's; the one scale becomes both logit_scale_a and logit_scale_t."""
    scale = state.get("logit_scale")
    weights = {k: v for k, v in state.items() if k != "logit_scale"}
    out = _renamed(weights, {new: old for old, new in CLAP_PREFIXES.items()}, "clsp model (ClapModel has no such part)")
    if scale is not None:
        out["logit_scale_a"], out["logit_scale_t"] = scale.clone(), scale.clone()
    return out


def read_preprocessor(folder: Path) -> dict:
    """The feature-extractor settings of a CLAP folder: preprocessor_config.json, or the `feature_extractor`
    section of processor_config.json (what transformers 5 writes for a whole processor); {} if neither."""
    for name, section in (("preprocessor_config.json", None), ("processor_config.json", "feature_extractor")):
        file = folder / name
        if file.exists():
            data = json.loads(file.read_text())
            data = data.get(section, {}) if section else data
            if data:
                return data
    return {}


def import_clap(model_cls, folder: Path):
    """Build a `model_cls` (CLSPModel) from a transformers CLAP checkpoint folder."""

    config_file = folder / "config.json"
    if not config_file.exists():
        raise FileNotFoundError(f"{folder} is not a CLAP checkpoint: no config.json")
    if json.loads(config_file.read_text()).get("model_type") != "clap":
        raise ValueError(f"{folder} is not a transformers CLAP checkpoint (config model_type is not 'clap')")
    clap = ClapModel.from_pretrained(str(folder))
    config = clap_config_to_clsp(clap.config, read_preprocessor(folder), float(clap.logit_scale_a.detach()))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = model_cls(config, tokenizer=tokenizer)
    model.load_state(clap_state_to_clsp(clap.state_dict()), source=str(folder))
    return model.eval()
