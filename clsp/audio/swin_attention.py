"""HTSAT's Swin window attention through torch's fused `scaled_dot_product_attention` (SDPA).

transformers' `ClapAudioSelfAttention` is eager only: matmul, add the relative-position bias and the
shifted-window mask, softmax, matmul, with the [windows, heads, N, N] scores and probabilities written
out (and kept for backward). transformers has no SDPA path for this model, so this module adds one:
SDPA takes the bias and the mask as ONE additive float mask and runs a fused kernel (memory-efficient or
cuDNN attention on CUDA, a flash-style kernel on the CPU) that never stores the probabilities.

`set_window_attention(model, "sdpa" | "eager")` swaps the class of the model's attention and layer modules
in place (`module.__class__`): the subclasses below only override methods, so parameters, buffers and
their names are those of transformers, and every clsp folder, converted LAION-CLAP / WavCaps / HTSAT
folder and transformers CLAP checkpoint loads unchanged. "eager" restores transformers' own classes.

The mask. The shifted-window mask [nW, N, N] depends only on the feature-map size, the window and the
shift: `CachedMaskLayer` builds it once per block and keeps it (rebuilt only for a new size, dtype or
device). The relative-position bias is a trained parameter, so its [H, N, N] gather is part of every
forward (that is where its gradient comes from); it is added to the cached shift mask once per block and
forward. Queries are laid out [B, nW*H, N, d], so that [1, nW*H, N, N] mask broadcasts over the batch
without being copied B times; blocks without a shift keep transformers' [B*nW, H, N, d] layout and a
[1, H, N, N] mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.clap.modeling_clap import ClapAudioLayer, ClapAudioSelfAttention

from clsp.config import ATTN_IMPLEMENTATIONS


class SdpaWindowAttention(ClapAudioSelfAttention):
    """`ClapAudioSelfAttention` whose forward runs SDPA; same parameters, same results (float rounding)."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_attentions: bool | None = False) -> tuple[torch.Tensor, ...]:
        if output_attentions:  # SDPA never forms the probabilities: the eager path returns them
            return super().forward(hidden_states, attention_mask, output_attentions)
        windows, n, channels = hidden_states.shape  # windows = B * nW
        heads, d = self.num_attention_heads, self.attention_head_size
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, heads).permute(2, 0, 1).contiguous()  # [H, N, N]
        dropout = self.dropout.p if self.training else 0.0
        if attention_mask is None:
            q, k, v = (proj(hidden_states).view(windows, n, heads, d).transpose(1, 2)
                       for proj in (self.query, self.key, self.value))
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None].to(q.dtype), dropout_p=dropout)
            return (out.transpose(1, 2).reshape(windows, n, channels),)
        n_windows = attention_mask.shape[0]
        batch = windows // n_windows
        # [B, N, nW, C]: one copy of the input; q/k/v are then views [B, nW*H, N, d] (head-major per window).
        x = hidden_states.view(batch, n_windows, n, channels).transpose(1, 2).contiguous()
        q, k, v = (proj(x).view(batch, n, n_windows * heads, d).transpose(1, 2)
                   for proj in (self.query, self.key, self.value))
        mask = (bias[None] + attention_mask[:, None].to(bias.dtype)).view(1, n_windows * heads, n, n)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), dropout_p=dropout)
        out = out.transpose(1, 2).reshape(batch, n, n_windows, channels).transpose(1, 2)
        return (out.reshape(windows, n, channels),)


class CachedMaskLayer(ClapAudioLayer):
    """`ClapAudioLayer` whose shifted-window mask is built once per size, dtype and device, not per forward."""

    def get_attn_mask(self, height: int, width: int, dtype: torch.dtype, device: torch.device):
        if torch.compiler.is_compiling():  # traced once into the graph; the compiler folds it
            return super().get_attn_mask(height, width, dtype, device)
        key = (height, width, self.window_size, self.shift_size, dtype, device)
        cache = self.__dict__.setdefault("_clsp_mask_cache", {})
        if key not in cache:
            cache.clear()  # one size per block in practice: keep only the current mask
            cache[key] = super().get_attn_mask(height, width, dtype, device)
        return cache[key]


def set_window_attention(model: nn.Module, implementation: str) -> nn.Module:
    """Make every Swin attention block of `model` (a transformers ClapAudioModel) use `implementation`."""
    if implementation not in ATTN_IMPLEMENTATIONS:
        raise ValueError(f"unknown attn_implementation {implementation!r} for htsat; choose one of "
                         f"{ATTN_IMPLEMENTATIONS}")
    sdpa = implementation == "sdpa"
    for module in model.modules():
        if isinstance(module, ClapAudioSelfAttention):
            module.__class__ = SdpaWindowAttention if sdpa else ClapAudioSelfAttention
        elif isinstance(module, ClapAudioLayer):
            module.__class__ = CachedMaskLayer if sdpa else ClapAudioLayer
            module.__dict__.pop("_clsp_mask_cache", None)
    return model
