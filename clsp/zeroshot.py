"""Zero-shot classification: label prompts, their embeddings, and calibrated probabilities.

    probs = model.zero_shot(["dog.wav", "rain.flac"], ["dog", "rain", "car_horn"])   # [2, 3], rows sum to 1

A label becomes a prompt through a template ("This is a sound of {}." by default; `{label}` works too).
With several templates each label's prompt embeddings are averaged and renormalised (CLIP's prompt
ensembles), and labels with underscores read as words ("car_horn" -> "car horn"). The probabilities
are softmax(scale * cosine), `scale` being the model's learned temperature (`CLSPModel.scale()`), the
one its contrastive loss trained with: a softmax over raw cosines (scale 1) is nearly uniform.

`clsp.eval zeroshot` ranks labels with the same `label_embeddings`, so this and the evaluation agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

DEFAULT_TEMPLATE = "This is a sound of {}."


def check_templates(templates: str | Sequence[str]) -> list[str]:
    """The templates as a list; each must hold one `{}` or `{label}` field and nothing else to fill."""
    templates = [templates] if isinstance(templates, str) else list(templates)
    if not templates:
        raise ValueError("at least one prompt template is needed")
    for t in templates:
        if "{}" not in t and "{label}" not in t:
            raise ValueError(f"template {t!r} has no {{label}} placeholder (or {{}})")
        try:
            fill(t, "x")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"template {t!r} is not a format string with one {{}} or {{label}} field: {exc!r}") from None
    return templates


def fill(template: str, label: str) -> str:
    """The prompt for `label`: the template's `{}` or `{label}` replaced by it, underscores read as spaces."""
    words = label.replace("_", " ")
    return template.format(words, label=words) if "{}" in template else template.format(label=words)


def label_embeddings(model, labels: Sequence[str], templates: str | Sequence[str] = DEFAULT_TEMPLATE, *,
                     encode: Callable[[list[str]], torch.Tensor] | None = None) -> torch.Tensor:
    """[C, D]: each label's prompts (one per template) embedded, averaged and renormalised.

    `encode` embeds a list of texts (default `model.encode_text`; the evaluation passes its cached one)."""
    if not labels:
        raise ValueError("the label list is empty")
    templates = check_templates(templates)
    prompts = [fill(t, str(label)) for label in labels for t in templates]
    embeds = (encode or model.encode_text)(prompts)
    return F.normalize(embeds.view(len(labels), len(templates), -1).mean(1), dim=-1)


@torch.no_grad()
def zero_shot(model, audio, labels: Sequence[str], template: str | Sequence[str] = DEFAULT_TEMPLATE,
              sample_rate: int | None = None, long: str = "crop") -> torch.Tensor:
    """[N clips, C labels] probabilities, each row summing to 1: softmax(model.scale() * cosine)."""
    texts = label_embeddings(model, labels, template)
    clips = model.encode_audio(audio, sample_rate=sample_rate, long=long)
    return (model.scale() * model.similarity(clips, texts.to(clips.device))).softmax(dim=-1)
