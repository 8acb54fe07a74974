"""Converter parity at the released sizes: random weights written in each source's layout (the test
builders of tests/convert), converted, and compared with the independent transformers path.

    python tools/convert_parity.py laion-tiny | laion-base-fusion | wavcaps

Prints the largest absolute difference of the L2-normalised embeddings (audio and text). The tests
run the same comparison at tiny sizes; this is the check at HTSAT-tiny/base + RoBERTa/BERT-base sizes
(about a minute and 2 GB each on a CPU).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "convert"))
import convert_sources as cs  # noqa: E402

from clsp.convert import convert_laion, convert_wavcaps  # noqa: E402
from clsp.tiny import tiny_tokenizer  # noqa: E402

BASE_TEXT = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
HTSAT_TINY = dict(patch_embeds_hidden_size=96, depths=[2, 2, 6, 2], num_attention_heads=[4, 8, 16, 32], hidden_size=768)
HTSAT_BASE = dict(patch_embeds_hidden_size=128, depths=[2, 2, 12, 2], num_attention_heads=[4, 8, 16, 32],
                  hidden_size=1024)


def laion(root: Path, base: bool) -> tuple[float, float]:
    from transformers import ClapFeatureExtractor

    cs.HTSAT.update(HTSAT_BASE if base else HTSAT_TINY)
    cs.TEXT.update(BASE_TEXT, vocab_size=50265)
    clap = cs.laion_checkpoint(root / "c.pt", fusion=base)
    tiny_tokenizer(root / "tok")
    model = convert_laion(root / "c.pt", tokenizer=str(root / "tok"), amodel="HTSAT-base" if base else "HTSAT-tiny")
    fe = ClapFeatureExtractor(frequency_min=50, frequency_max=14000, padding="repeatpad",
                              truncation="fusion" if base else "rand_trunc")
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 0.1, 48000 * 4).astype(np.float32), rng.normal(0, 0.1, 480000).astype(np.float32)]
    ours = model.encode_audio(waves, sample_rate=48000)
    audio = 0.0
    with torch.no_grad():
        for i, wave in enumerate(waves):
            inputs = fe(wave, sampling_rate=48000, return_tensors="pt")
            inputs["is_longer"][:] = False
            ref = F.normalize(clap.get_audio_features(**inputs).pooler_output, dim=-1)[0]
            audio = max(audio, float((ours[i] - ref).abs().max()))
        texts = ["a loud dog barks", "rain on a roof with wind, then a bird sings"]
        enc = tiny_tokenizer()(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        ref = F.normalize(clap.get_text_features(**enc).pooler_output, dim=-1)
        text = float((model.encode_text(texts) - ref).abs().max())
    return audio, text


def wavcaps(root: Path) -> tuple[float, float]:
    cs.HTSAT.update(HTSAT_TINY)
    cs.TEXT.update(BASE_TEXT, vocab_size=30522)
    audio, bert, audio_proj, text_proj = cs.wavcaps_checkpoint(root / "w.pt", embed=1024, temp=0.0123)
    tok = cs.bert_tokenizer(root / "tok")
    model = convert_wavcaps(root / "w.pt", tokenizer=str(root / "tok"))
    fe = cs.wavcaps_features()
    rng = np.random.default_rng(0)
    waves = [rng.normal(0, 0.1, 32000 * 4).astype(np.float32), rng.normal(0, 0.1, 320000).astype(np.float32)]
    ours = model.encode_audio(waves, sample_rate=32000)
    worst = 0.0
    with torch.no_grad():
        for i, wave in enumerate(waves):
            features = fe(wave, sampling_rate=32000, return_tensors="pt")["input_features"]
            ref = F.normalize(audio_proj(audio(input_features=features).pooler_output), dim=-1)[0]
            worst = max(worst, float((ours[i] - ref).abs().max()))
        raw = ['A Dog barks, loudly!  Then "rain" (heavy) falls', "Birds sing: a man speaks?"]
        pre = [re.sub('[(,.!?;:|*")]', " ", t.lower()) for t in raw]  # WavCaps' text_preprocess, up to spaces
        enc = tok(pre, padding="longest", truncation=True, max_length=30, return_tensors="pt")
        ref = F.normalize(text_proj(bert(input_ids=enc.input_ids, attention_mask=enc.attention_mask)[0][:, 0]), dim=-1)
        text = float((model.encode_text(raw) - ref).abs().max())
    return worst, text


def main(argv: list[str]) -> int:
    kinds = {"laion-tiny": lambda r: laion(r, False), "laion-base-fusion": lambda r: laion(r, True), "wavcaps": wavcaps}
    if len(argv) != 1 or argv[0] not in kinds:
        print(f"usage: python tools/convert_parity.py {{{','.join(kinds)}}}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        audio, text = kinds[argv[0]](Path(tmp))
    print(f"{argv[0]}: max |audio embedding diff| {audio:.2e}, max |text embedding diff| {text:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
