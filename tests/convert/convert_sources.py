"""Released-checkpoint layouts built from random transformers references, offline and tiny.

Each builder returns the reference modules (the independent path the tests compare against) and
writes the file in the source's own layout: transformers' ClapModel names turned back into
LAION's / HTSAT's by inverting the documented renames (REFERENCE.md), query/key/value fused into
one qkv, plus the buffers a real file carries and a converter must drop.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

HTSAT = dict(patch_embeds_hidden_size=16, depths=[1, 2], num_attention_heads=[2, 4], hidden_size=32, window_size=8,
             spec_size=256, num_mel_bins=64)
TEXT = dict(vocab_size=1000, hidden_size=128, num_hidden_layers=1, num_attention_heads=2, intermediate_size=96)

def wavcaps_features():
    """The ASE audio frontend as transformers' ClapFeatureExtractor: 32 kHz, hop 320, 64 mels,
    50-14000 Hz, clips zero-padded to 10 s (the independent path WavCaps conversions are checked against)."""
    from transformers import ClapFeatureExtractor

    return ClapFeatureExtractor(sampling_rate=32000, hop_length=320, fft_window_size=1024, feature_size=64,
                                frequency_min=50, frequency_max=14000, max_length_s=10, padding="pad",
                                truncation="rand_trunc")


# transformers name -> original name, applied to whole dotted segments of audio keys.
_AUDIO_RENAMES = [("layernorm_before", "norm1"), ("layernorm_after", "norm2"), ("attention.output.dense", "attn.proj"),
                  ("attention.self.relative_position", "attn.relative_position"), ("intermediate.dense", "mlp.fc1"),
                  ("output.dense", "mlp.fc2"), ("batch_norm", "bn0")]


def spread(module: nn.Module) -> None:
    """Make a random reference sensitive to naming errors: at init attention is nearly uniform (tiny
    query/key weights) and norms are the identity, which hides swapped or dropped tensors."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if ".query." in name or ".key." in name:
                p.mul_(10)
            elif p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
        for name, b in module.named_buffers():
            if name.endswith("running_mean"):
                b.add_(torch.randn_like(b) * 0.1)


def original_htsat(hf_audio_state: dict, prefix: str) -> dict:
    """A transformers ClapAudioModel state dict (keys audio_encoder.*) in the original HTSAT layout."""
    out, qkv = {}, {}
    for key, value in hf_audio_state.items():
        name = key.removeprefix("audio_encoder.")
        for part in ("query", "key", "value"):
            if f".attention.self.{part}." in name:
                block, leaf = name.split(f".attention.self.{part}.")
                qkv.setdefault((block, leaf), {})[part] = value
                break
        else:
            for new, old in _AUDIO_RENAMES:
                name = name.replace(new, old)
            out[prefix + name] = value.clone()
    for (block, leaf), parts in qkv.items():
        out[f"{prefix}{block}.attn.qkv.{leaf}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    # What real files also hold: the classifier, the Swin shift masks (every second block).
    out[prefix + "tscam_conv.weight"] = torch.randn(527, 32, 2, 3)
    out[prefix + "tscam_conv.bias"] = torch.randn(527)
    out[prefix + "head.weight"] = torch.randn(527, 527)
    out[prefix + "head.bias"] = torch.randn(527)
    out[prefix + "layers.1.blocks.1.attn_mask"] = torch.zeros(16, 64, 64)
    return out


def torchlibrosa_buffers(prefix: str) -> dict:
    return {prefix + "spectrogram_extractor.stft.conv_real.weight": torch.randn(513, 1, 1024),
            prefix + "spectrogram_extractor.stft.conv_imag.weight": torch.randn(513, 1, 1024),
            prefix + "logmel_extractor.melW": torch.randn(513, 64)}


def laion_checkpoint(path, fusion: bool = False, seed: int = 0):
    """A random ClapModel (RoBERTa text) and the same weights as LAION-CLAP's training checkpoint."""
    from transformers import ClapConfig, ClapModel

    torch.manual_seed(seed)
    audio = dict(HTSAT, enable_fusion=fusion, fusion_type="aff_2d" if fusion else None)
    text = dict(TEXT, max_position_embeddings=80, pad_token_id=1, layer_norm_eps=1e-5, type_vocab_size=1)
    clap = ClapModel(ClapConfig(text_config=text, audio_config=audio, projection_dim=24)).eval()
    spread(clap)
    with torch.no_grad():
        clap.logit_scale_a.fill_(3.1)
    hf = clap.state_dict()
    state = original_htsat({k[len("audio_model."):]: v for k, v in hf.items() if k.startswith("audio_model.")},
                           "audio_branch.")
    state.update(torchlibrosa_buffers("audio_branch."))
    for k, v in hf.items():
        if k.startswith("text_model.") and not k.endswith("token_type_ids"):
            state["text_branch." + k[len("text_model."):]] = v.clone()
        for side in ("audio", "text"):
            for i, linear in ((0, "linear1"), (2, "linear2")):
                if k.startswith(f"{side}_projection.{linear}."):
                    state[f"{side}_projection.{i}.{k.split('.')[-1]}"] = v.clone()
            if k == "logit_scale_a" or k == "logit_scale_t":
                state[k] = v.clone()
    for side in ("audio", "text"):  # the training-only MLPs
        for i in (0, 3):
            state[f"{side}_transform.sequential.{i}.weight"] = torch.randn(24, 24)
            state[f"{side}_transform.sequential.{i}.bias"] = torch.randn(24)
    state = {"module." + k: v for k, v in state.items()}
    torch.save({"epoch": 45, "name": "tiny", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path)
    return clap


def wavcaps_checkpoint(path, seed: int = 0, temp: float = 0.05, embed: int = 48):
    """Random references (ClapAudioModel, BertModel without pooler, projections) and their WavCaps ASE file."""
    from transformers import BertConfig, BertModel, ClapAudioConfig, ClapAudioModel

    torch.manual_seed(seed)
    audio = ClapAudioModel(ClapAudioConfig(**HTSAT)).eval()
    bert = BertModel(BertConfig(**TEXT, max_position_embeddings=64, layer_norm_eps=1e-12),
                     add_pooling_layer=False).eval()
    audio_proj = nn.Sequential(nn.Linear(HTSAT["hidden_size"], embed), nn.ReLU(), nn.Linear(embed, embed))
    text_proj = nn.Sequential(nn.Linear(TEXT["hidden_size"], embed), nn.ReLU(), nn.Linear(embed, embed))
    for module in (audio, bert, audio_proj, text_proj):
        spread(module)
    state = original_htsat(audio.state_dict(), "audio_encoder.audio_enc.")
    state.update(torchlibrosa_buffers("audio_encoder.audio_enc.audio_feats_extractor.mel_trans."))
    state.update({"text_encoder.text_encoder." + k: v.clone() for k, v in bert.state_dict().items()
                  if not k.endswith("token_type_ids")})
    state.update({"audio_proj." + k: v.clone() for k, v in audio_proj.state_dict().items()})
    state.update({"text_proj." + k: v.clone() for k, v in text_proj.state_dict().items()})
    state["temp"] = torch.tensor(temp)
    config = {"audio_args": {"sr": 32000, "n_fft": 1024, "hop_length": 320, "f_min": 50, "f_max": 14000, "n_mels": 64,
                             "max_length": 10, "mono": True},
              "text_encoder_args": {"type": "bert-base-uncased", "freeze": False}, "embed_size": embed}
    # A numpy scalar, as FusionAudio's files hold (its loader allow-lists numpy's scalar).
    torch.save({"model": state, "optimizer": {}, "epoch": 15, "config": config, "best": np.float64(0.42)}, path)
    return audio, bert, audio_proj, text_proj


def htsat_checkpoint(path, seed: int = 0):
    """A random ClapAudioModel and the AudioSet HTSAT Lightning checkpoint holding it (sed_model.*)."""
    from transformers import ClapAudioConfig, ClapAudioModel

    torch.manual_seed(seed)
    audio = ClapAudioModel(ClapAudioConfig(**HTSAT)).eval()
    spread(audio)
    state = original_htsat(audio.state_dict(), "sed_model.")
    state.update(torchlibrosa_buffers("sed_model."))
    torch.save({"epoch": 30, "global_step": 1000, "pytorch-lightning_version": "1.5.9", "state_dict": state}, path)
    return audio


def bert_tokenizer(folder):
    """A tiny bert-base-uncased-like WordPiece tokenizer, saved to `folder`."""
    from transformers import BertTokenizer

    from clsp.tiny import _WORDS

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz0123456789",
             *("##" + c for c in "abcdefghijklmnopqrstuvwxyz"), *',.!?;:|*"()', *sorted(set(_WORDS))]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(dict.fromkeys(vocab))}, do_lower_case=True)
    tok.save_pretrained(str(folder))
    return tok
