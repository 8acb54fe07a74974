"""The model card of a saved clsp folder (README.md): towers, usage, evaluation table, config.

huggingface_hub's `PyTorchModelHubMixin` renders `MODEL_CARD` (a Jinja template whose `card_data` is
the YAML header) when a model is saved or pushed; `card_fields` fills the template for a model.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping
from typing import Any

from clsp.config import CLSPConfig

MODEL_CARD = """---
{{ card_data }}
---

# {{ title }}

A contrastive language-audio dual encoder saved by clsp: {{ summary }}.

```python
from clsp import CLSPModel

model = CLSPModel.from_pretrained("<this folder or hub id>")
a = model.encode_audio(["dog.wav", "rain.flac"])          # [2, {{ dim }}], L2-normalised
t = model.encode_text(["a dog barks", "rain on a roof"])  # [2, {{ dim }}]
scores = model.similarity(a, t)
```

Other forms: `python -m clsp.export <this folder or hub id> OUT --format transformers` writes a folder that
`transformers.ClapModel`, `ClapProcessor` and `pipeline("zero-shot-audio-classification")` load without
clsp (HTSAT + RoBERTa models); `--format onnx` writes `audio_encoder.onnx` and `text_encoder.onnx` for
onnxruntime (any towers). With clsp imported, `transformers.AutoModel.from_pretrained` loads this folder.
{% if results_table %}
## Evaluation

{{ results_table }}
{% endif %}
## Config

```json
{{ config_json }}
```
"""



def card_fields(cfg: CLSPConfig, results: Mapping | None = None) -> dict[str, Any]:
    """The template's fields for a model with config `cfg` (and its evaluation `results`, if any)."""
    text_name = cfg.text.pretrained or cfg.text.hf_config.get("model_type", "text encoder")
    return {
        "title": f"clsp {cfg.audio.tower} + {text_name}",
        "summary": (f"{cfg.audio.tower} audio tower at {cfg.audio.sample_rate} Hz, {text_name} text tower, "
                    f"{cfg.head.dim}-d joint space"),
        "dim": cfg.head.dim,
        "results_table": results_table(results) if results else "",
        "config_json": json.dumps(cfg.to_dict(), indent=2),
    }


def results_table(results: Mapping) -> str:
    """Every number in a (nested) results dict as a two-column Markdown table, e.g. `test / t2a_R@1`."""
    rows = []

    def walk(prefix: str, value) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix} / {key}" if prefix else str(key), inner)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            rows.append(f"| {prefix} | {value:.4g} |")

    walk("", results)
    return "\n".join(["| result | value |", "|---|---|", *rows]) if rows else ""
