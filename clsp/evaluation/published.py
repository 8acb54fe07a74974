"""Published numbers the suite report prints beside a model's own (from REFERENCE.md).

Each row names its paper and the setting it was measured in, so a reader can tell which
comparisons are like for like: the AudioCaps rows are after AudioCaps fine-tuning, the
ESC-50 and speech rows are zero-shot. Values are percentages except Pearson r and the
captioning scores (fractions, as pycocoevalcap gives them). The captioning rows are the only
ones found in a source that could be read here: the DCASE 2020 task 6 baseline's Clotho
evaluation scores as the 3rd-placed team's repository tabulates them
(github.com/WangHelin1997/DCASE2020-Task6-PKU), and CoNeTTE's SPIDEr from its abstract
(arXiv:2309.00454); later DCASE baselines publish SPIDEr-FL, which clsp does not compute.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Published", "PUBLISHED", "published_for"]


@dataclass(frozen=True)
class Published:
    paper: str  # who reported it
    model: str  # what was measured, in the paper's words
    task: str  # suite task id: "audiocaps", "esc50", "ravdess/emotion", ...
    metrics: dict[str, float]  # clsp metric key -> value
    setting: str = ""  # protocol notes (fine-tuned, zero-shot, ...)


_FUSIONAUDIO = "FusionAudio (Chen et al., ACL 2026)"
_AC_FT = "AudioCaps test after AudioCaps fine-tuning; WavCaps a2t/t2a protocol"
_CLSP = "CLSP / FCaps (Yang et al., ACL 2026)"
_CONETTE = "CoNeTTE (Labbé et al., arXiv:2309.00454)"
_CONETTE_SETTING = "trained on AudioCaps + Clotho + MACS + WavCaps; SPIDEr as the abstract states it"


def _ac(captions: str, t2a1: float, t2a10: float, a2t1: float, a2t10: float) -> Published:
    return Published(_FUSIONAUDIO, f"HTSAT+BERT trained on {captions} captions", "audiocaps",
                     {"t2a/R@1": t2a1, "t2a/R@10": t2a10, "a2t/R@1": a2t1, "a2t/R@10": a2t10}, _AC_FT)


PUBLISHED: tuple[Published, ...] = (
    _ac("AudioCaps+Clotho", 36.1, 83.9, 46.8, 90.7),
    _ac("WavCaps", 42.2, 87.1, 54.6, 92.4),
    _ac("AudioSetCaps", 43.4, 88.2, 57.3, 93.2),
    _ac("FusionAudio", 44.3, 90.4, 57.8, 94.4),
    Published("LAION-CLAP (Wu et al., ICASSP 2023)", "HTSAT+RoBERTa", "esc50", {"WA": 91.0}, "zero-shot, 5 folds"),
    Published("MS-CLAP 2023 (Elizalde et al., 2023)", "HTSAT+GPT-2", "esc50", {"WA": 93.9}, "zero-shot, 5 folds"),
    Published("WavCaps (Mei et al., 2024)", "HTSAT+BERT", "esc50", {"WA": 94.8}, "zero-shot, 5 folds"),
    Published(_CLSP, "CLSP", "ravdess/emotion", {"WA": 46.8}, "zero-shot"),
    Published(_CLSP, "CLSP", "ravdess/gender", {"WA": 100.0}, "zero-shot"),
    Published(_CLSP, "CLSP", "crema-d/emotion", {"WA": 35.1}, "zero-shot"),
    Published(_CLSP, "CLSP", "crema-d/age", {"WA": 40.6}, "zero-shot; the paper's age bins may differ from clsp's"),
    Published(_CLSP, "CLSP", "style", {"pearson": 0.893}, "style similarity vs human ratings"),
    Published("DCASE 2020 task 6 baseline, as tabulated by Wang et al. (DCASE 2020 report's repository)",
              "the task's baseline system", "clotho/captioning",
              {"BLEU_1": 0.389, "BLEU_4": 0.015, "ROUGE_L": 0.262, "METEOR": 0.084, "CIDEr-D": 0.074,
               "SPICE": 0.033, "SPIDEr": 0.054}, "Clotho evaluation split"),
    Published(_CONETTE, "CoNeTTE (ConvNeXt + transformer decoder, task embeddings)", "clotho/captioning",
              {"SPIDEr": 0.305}, _CONETTE_SETTING),
    Published(_CONETTE, "CoNeTTE (ConvNeXt + transformer decoder, task embeddings)", "audiocaps/captioning",
              {"SPIDEr": 0.441}, _CONETTE_SETTING),
)


def published_for(task: str) -> list[Published]:
    """The published rows for one suite task id."""
    return [p for p in PUBLISHED if p.task == task]
