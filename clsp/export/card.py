"""Model cards (README.md, YAML header + usage) for the transformers and ONNX exports, and the upload.

huggingface_hub's `ModelCard.from_template` renders them; the header's `library_name` and
`pipeline_tag` are what the hub uses to show the right widget and code snippet.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

TRANSFORMERS_CARD = """---
{{ card_data }}
---

# {{ title }}

A contrastive language-audio model ({{ summary }}) trained with clsp and exported as a transformers CLAP
model: `ClapModel`, `ClapProcessor` and the zero-shot pipeline load it without clsp.

```python
from transformers import ClapModel, ClapProcessor, pipeline

model = ClapModel.from_pretrained("<this folder or hub id>")
processor = ClapProcessor.from_pretrained("<this folder or hub id>")
inputs = processor(audio=[waveform], text=["a dog barks", "rain on a roof"], sampling_rate={{ rate }},
                   return_tensors="pt", padding=True)
outputs = model(**inputs)
outputs.audio_embeds, outputs.text_embeds       # L2-normalised, {{ dim }}-d
outputs.logits_per_audio.softmax(dim=-1)       # label probabilities

classifier = pipeline("zero-shot-audio-classification", model="<this folder or hub id>")
classifier(waveform, candidate_labels=["dog", "rain"])   # waveform: 1-D float array at {{ rate }} Hz
```

Audio is {{ rate }} Hz mono, in {{ seconds }} s windows. Clips longer than the window are cropped at
random by transformers' feature extractor{{ fusion_note }}; clsp crops at the centre in eval mode, so
embeddings of such clips differ between the two, and equal clsp's (within 1e-4) for clips up to the window.
"""

# Run by tests/export/test_export_onnx.py, and the same block is in docs/export.md (folder "OUT").
ONNX_SNIPPET = '''import json

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

folder = "."
settings = json.load(open(f"{folder}/frontend.json"))
audio = ort.InferenceSession(f"{folder}/audio_encoder.onnx")
text = ort.InferenceSession(f"{folder}/text_encoder.onnx")
tokenizer = Tokenizer.from_file(f"{folder}/tokenizer.json")
tokenizer.enable_padding(pad_id=settings["text"]["pad_token_id"])
tokenizer.enable_truncation(settings["text"]["max_length"])

rate = settings["audio"]["sample_rate"]
waves = np.random.default_rng(0).normal(0, 0.1, (2, 5 * rate)).astype(np.float32)  # two 5 s clips
feeds = {"waveforms": waves}
if "lengths" in settings["audio"]["inputs"]:  # Whisper: each clip's true length, zeros past it
    feeds["lengths"] = np.array([5 * rate, 5 * rate], dtype=np.int64)
a = audio.run(None, feeds)[0]  # [2, D], L2-normalised

captions = ["a dog barks", "rain on a roof"]
p = settings["text"]["punctuation"]
captions = [c.translate(str.maketrans(p, " " * len(p))) for c in captions]
captions = [c.lower() for c in captions] if settings["text"]["lowercase"] else captions
enc = tokenizer.encode_batch(captions)
ids = np.array([e.ids for e in enc], dtype=np.int64)
mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
t = text.run(None, {"input_ids": ids, "attention_mask": mask})[0]  # [2, D]
scores = a @ t.T  # cosine similarities
'''

ONNX_CARD = """---
{{ card_data }}
---

# {{ title }}

A contrastive language-audio model ({{ summary }}) trained with clsp, exported to ONNX:
`audio_encoder.onnx` (waveforms `[batch, samples]` float32 at {{ rate }} Hz{{ lengths_note }} -> embeddings)
and `text_encoder.onnx` (`input_ids`, `attention_mask` -> embeddings), both L2-normalised and {{ dim }}-d,
with the tokenizer files and `frontend.json` beside them. With onnxruntime, numpy and tokenizers only:

```python
{{ snippet }}```
"""


def _summary(model) -> dict:
    cfg = model.config
    text = cfg.text.pretrained or cfg.text.hf_config.get("model_type", "text encoder")
    return {"title": f"clsp {cfg.audio.tower} + {text}", "dim": cfg.head.dim, "rate": cfg.audio.sample_rate,
            "summary": f"{cfg.audio.tower} audio tower at {cfg.audio.sample_rate} Hz, {text} text tower, "
                       f"{cfg.head.dim}-d joint space"}


def transformers_card(model) -> ModelCard:
    """README.md of a transformers export: library transformers, zero-shot audio classification."""
    data = ModelCardData(library_name="transformers", pipeline_tag="zero-shot-audio-classification",
                         tags=["audio", "clap", "clsp", "zero-shot-audio-classification"])
    fusion = model.config.audio.truncation == "fusion"
    note = " (with fusion, a batch with no longer clip also gets one random clip flagged longer)" if fusion else ""
    return ModelCard.from_template(data, template_str=TRANSFORMERS_CARD, seconds=f"{model.config.audio.max_seconds:g}",
                                   fusion_note=note, **_summary(model))


def onnx_card(model) -> ModelCard:
    """README.md of an ONNX export."""
    whisper = model.config.audio.tower == "whisper"
    data = ModelCardData(library_name="onnx", tags=["audio", "clap", "clsp", "onnx"])
    return ModelCard.from_template(
        data, template_str=ONNX_CARD, snippet=ONNX_SNIPPET,
        lengths_note=", plus each clip's `lengths` [batch] int64" if whisper else ", one whole clip per row",
        **_summary(model))


def push_folder(folder: str | Path, repo_id: str, *, private: bool | None = None, token: str | None = None) -> str:
    """Upload an export folder (its README.md card included) to the hub in one commit; returns the repo URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message="clsp export")
    return str(url)
