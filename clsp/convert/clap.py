"""Import a transformers-format CLAP checkpoint (HTSAT + RoBERTa-like text + heads + scales).

The transformers `ClapModel` keeps two scales (`logit_scale_a`, `logit_scale_t`); clsp has
one, taken from the audio side. Feature-extraction settings come from the checkpoint's
preprocessor_config.json, so the frontend sees audio exactly as the checkpoint was trained.
"""

from __future__ import annotations

import json
from pathlib import Path

from clsp.clap_config import clap_config_to_clsp


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
