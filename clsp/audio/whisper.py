"""Whisper speech tower: the transformers Whisper encoder on variable-length input.

Stock Whisper pads every clip to 30 s (3000 mel frames). Here a batch is padded only to
its longest clip: the first N positional embeddings are used, padded frames are zeroed
before each convolution (so a clip sees the same zeros alone or in a batch) and masked
out of attention and pooling. A batch of 5 s clips thus costs about a sixth of 30 s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from transformers import WhisperConfig, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from clsp.audio.whisper_frontend import WhisperFrontend
from clsp.config import AudioConfig, portable_hf_config
from clsp.errors import load_pretrained


def _build_encoder(cfg: AudioConfig) -> nn.Module:

    if cfg.pretrained is not None:
        # Whisper checkpoints hold encoder + decoder; keep the encoder.
        return load_pretrained("model.audio.pretrained", cfg.pretrained, lambda name: WhisperModel.from_pretrained(
            name, attn_implementation=cfg.attn_implementation)).get_encoder()
    hf = {k: v for k, v in cfg.hf_config.items() if k != "model_type"}
    hf.setdefault("num_mel_bins", cfg.n_mels)
    return WhisperEncoder(WhisperConfig(**hf, attn_implementation=cfg.attn_implementation))


class WhisperTower(nn.Module):
    """`forward(waveforms, lengths)` -> (pooled [B, H], frames [B, F, H], mask [B, F])."""

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = _build_encoder(cfg)
        enc_cfg = self.encoder.config
        if enc_cfg.num_mel_bins != cfg.n_mels:
            raise ValueError(f"audio.n_mels={cfg.n_mels} but the Whisper encoder expects {enc_cfg.num_mel_bins}")
        self.hidden_size = int(enc_cfg.d_model)
        max_seconds = min(cfg.max_seconds, 30.0)
        stft = {k: v for k, v in (("n_fft", cfg.n_fft), ("hop_length", cfg.hop_length)) if v is not None}
        self.frontend = WhisperFrontend(sample_rate=cfg.sample_rate, n_mels=cfg.n_mels, max_seconds=max_seconds, **stft)
        self.gradient_checkpointing = cfg.gradient_checkpointing
        self._transformer = _transformer  # or its compiled form (`compile`)
        if cfg.freeze:
            self.encoder.requires_grad_(False)

    def hf_config_dict(self) -> dict:
        return portable_hf_config(self.encoder.config)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        enc = self.encoder
        feats, frame_lengths = self.frontend(waveforms, lengths)  # [B, M, F], [B]
        n_frames = feats.shape[-1]
        frame_mask = torch.arange(n_frames, device=feats.device)[None, :] < frame_lengths[:, None]
        x = feats * frame_mask[:, None, :]
        # Zero the padding after conv1 too: gelu(bias) is not zero and conv2 would see it.
        x = F.gelu(enc.conv1(x)) * frame_mask[:, None, :]
        x = F.gelu(enc.conv2(x)).permute(0, 2, 1)  # [B, F', H], F' = ceil(F / 2)
        if x.shape[1] > enc.embed_positions.num_embeddings:
            raise ValueError(f"audio longer than the encoder's {enc.embed_positions.num_embeddings} positions")
        return self._transformer(self, x, (frame_lengths + 1) // 2)

    def compile(self, **options) -> None:
        """`torch.compile` the transformer (positions, layers, norm, pooling), not the frontend and conv stem:
        inductor specialises a convolution's backward to its input length, so with them every new batch
        length would recompile. The stem is ~4 % of the tower's FLOPs."""
        self._transformer = torch.compile(_transformer, **options)


def _transformer(tower: WhisperTower, x: torch.Tensor, valid: torch.Tensor):
    """The encoder's layers on conv features `x` [B, F', H] with `valid` [B] positions each; a function of
    the tower (not a bound method) so that a compiled copy is shared safely by deep copies of the tower."""
    enc = tower.encoder
    n_pos = x.shape[1]
    mask = torch.arange(n_pos, device=x.device)[None, :] < valid[:, None]
    x = x + enc.embed_positions.weight[:n_pos]
    x = F.dropout(x, p=enc.dropout, training=tower.training)
    # Additive key-padding mask, the form transformers' attention layers take.
    bias = torch.zeros(mask.shape, dtype=x.dtype, device=x.device)
    bias = bias.masked_fill(~mask, torch.finfo(x.dtype).min)[:, None, None, :]
    for layer in enc.layers:
        if tower.gradient_checkpointing and tower.training:
            x = checkpoint(layer, x, bias, use_reentrant=False)
        else:
            x = layer(x, bias)
        if isinstance(x, tuple):
            x = x[0]
    x = enc.layer_norm(x)
    weights = mask.unsqueeze(-1).to(x.dtype)
    pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return pooled, x, mask
