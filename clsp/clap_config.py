"""A transformers `ClapConfig` (+ its feature-extractor settings) as a CLSPConfig.

The CLAP importer (`clsp.convert.clap`) and the HTSAT tower, which can start from a transformers
CLAP folder (`audio.pretrained`), both need this mapping; it depends on the config alone, so both
can import it without the tower importing the converters.
"""

from __future__ import annotations

import math

from clsp.config import CLSPConfig, portable_hf_config


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
        "tower": "htsat",
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
        "pooling": "default",
    }
    text = {"pretrained": None, "hf_config": text_hf, "tokenizer": None, "pooling": "pooler", "max_length": 77}
    # ClapConfig keeps the scale itself (1/0.07); its parameter, like clsp's, is the log.
    scale = math.log(clap_config.logit_scale_init_value) if logit_scale is None else float(logit_scale)
    head = {"dim": int(clap_config.projection_dim), "logit_scale_init": scale,
            "logit_scale_max": max(math.log(100.0), scale)}
    return CLSPConfig.from_dict({"audio": audio, "text": text, "head": head})
