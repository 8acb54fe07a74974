"""The encoders as exportable modules: waveforms or token ids in, L2-normalised embeddings out.

`torch.export` (under `torch.onnx.export(dynamo=True)`) needs graphs without Python branches on
tensor values or on the input's length. The towers' own frontends pick paths per batch on the host
(short vs long clips, CPU shortcuts); these modules compute the same thing branch-free:

- HTSAT: each row is one whole clip of `samples` samples. The fixed window is one gather (centre crop
  of longer clips, as the frontend in eval mode; repeat/zero padding of shorter ones), and for
  `fusion` both the window view and the fused view are computed and one is selected per clip.
  HTSAT's fusion patch embedding (which indexes the longer clips) runs on every row and is selected
  with `is_longer`, which gives the same values.
- Whisper: the tower's own forward (its frontend has no host reads while exporting), with `lengths`.
- Text: `embed_text` as is.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TextGraph(nn.Module):
    """(input_ids [B, L], attention_mask [B, L]) -> embeddings [B, D]."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        return self.model.embed_text(input_ids, attention_mask).embeds


class WhisperGraph(nn.Module):
    """(waveforms [B, T], lengths [B]) -> embeddings [B, D]; rows zero-padded past their length."""

    def __init__(self, model) -> None:
        super().__init__()
        self.tower, self.head = model.audio, model.audio_head

    def forward(self, waveforms: Tensor, lengths: Tensor) -> Tensor:
        pooled, _, _ = self.tower(waveforms, lengths)
        return F.normalize(self.head(pooled), dim=-1)


def clap_window(frontend, waveforms: Tensor) -> Tensor:
    """Each row's fixed-length window [B, max_samples], as ClapFrontend in eval mode for clips of the
    batch's full length: longer clips cropped at the centre, shorter ones padded per `padding`."""
    n = frontend.max_samples
    batch, total = waveforms.shape
    length = torch.full((batch, 1), total, dtype=torch.long, device=waveforms.device)
    crop = (length - n + 1).clamp_min(0) // 2  # ClapFrontend._pick in eval mode: the centre start
    ar = torch.arange(n, device=waveforms.device)
    signal = waveforms.gather(1, (crop + ar) % length)  # the crop, or the clip repeated
    if frontend.padding == "repeat":
        return signal
    # repeatpad keeps whole copies, pad the clip itself; a clip at least a window long keeps everything.
    limit = torch.maximum((length.new_full((1, 1), n) // length) * length, length) if frontend.padding == "repeatpad" else length
    return torch.where(ar < limit, signal, torch.zeros((), device=waveforms.device))


def clap_features(frontend, waveforms: Tensor) -> tuple[Tensor, Tensor]:
    """ClapFrontend's (input_features, is_longer) in eval mode, without branches on the length."""
    batch, total = waveforms.shape
    n = frontend.max_samples
    window = frontend._log_mel(clap_window(frontend, waveforms), center=True)  # [B, frames, mels]
    longer = torch.full((batch,), total, dtype=torch.long, device=waveforms.device) > n
    if frontend.truncation == "rand_trunc":
        return window[:, None], longer
    # The whole-clip mel (zero-padded to be defined for short clips too, whose rows are not used).
    whole = F.pad(waveforms, (0, torch.sym_max(n + 1 - total, 0)))
    mel = frontend._log_mel(whole, center=True)
    lengths = torch.full((batch,), whole.shape[1], dtype=torch.long, device=waveforms.device)
    fused, flags = frontend._fusion(mel, lengths, None, None)
    features = torch.where(longer[:, None, None, None], fused, window[:, None].expand(-1, 4, -1, -1))
    return features, longer & flags


class _SelectedFusionPatchEmbed(nn.Module):
    """ClapAudioPatchEmbed's fusion forward for every row, kept where the clip is longer.

    transformers' version fuses only the rows `is_longer_idx` names, behind a Python branch on how
    many there are; that cannot be exported. Computing all rows and selecting gives the same values."""

    def __init__(self, embed: nn.Module) -> None:
        super().__init__()
        self.embed = embed

    def forward(self, hidden_states: Tensor, is_longer_idx: Tensor) -> Tensor:
        embed = self.embed
        batch = hidden_states.shape[0]
        longer = torch.zeros(batch, dtype=torch.bool, device=hidden_states.device).index_fill(0, is_longer_idx, True)
        global_states = embed.proj(hidden_states[:, 0:1])
        local = hidden_states[:, 1:]
        channels, height, width = local.shape[1:]
        local = embed.mel_conv2d(local.reshape(batch * channels, 1, height, width))
        features, height, width = local.shape[1:]
        local = local.view(batch, channels, features, height, width).permute(0, 2, 3, 1, 4).flatten(3)
        local = F.pad(local, (0, global_states.shape[-1] - local.shape[-1]))
        fused = embed.fusion_model(global_states, local)
        states = torch.where(longer[:, None, None, None], fused, global_states)
        if embed.flatten:
            states = states.flatten(2).transpose(1, 2)
        return embed.norm(states)


class HTSATGraph(nn.Module):
    """waveforms [B, T] (each row one whole clip) -> embeddings [B, D]."""

    def __init__(self, model) -> None:
        super().__init__()
        self.frontend = model.audio.frontend
        self.htsat = model.audio.encoder
        if self.htsat.config.enable_fusion:
            self.htsat = copy.deepcopy(self.htsat)
            encoder = self.htsat.audio_encoder
            encoder.patch_embed = _SelectedFusionPatchEmbed(encoder.patch_embed)
        self.head = model.audio_head

    def forward(self, waveforms: Tensor) -> Tensor:
        features, is_longer = clap_features(self.frontend, waveforms)
        pooled = self.htsat(input_features=features, is_longer=is_longer.view(-1, 1)).pooler_output
        return F.normalize(self.head(pooled), dim=-1)
