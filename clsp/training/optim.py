"""Optimizer parameter groups and the learning-rate schedule.

Weight decay never touches biases, norms or the contrastive scales (every parameter with
fewer than two dimensions, plus logit_scale / logit_bias). Pretrained towers can train at
`tower_lr` while new heads and randomly initialised parts use `lr`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

_NO_DECAY_NAMES = ("logit_scale", "logit_bias")


def param_groups(
    model: nn.Module, *, lr: float, weight_decay: float, tower_lr: float | None = None,
    pretrained_prefixes: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Split trainable parameters into (decay / no decay) x (pretrained tower / rest) groups."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim < 2 or name.endswith(_NO_DECAY_NAMES)
        pretrained = tower_lr is not None and name.startswith(pretrained_prefixes)
        groups.setdefault((no_decay, pretrained), []).append(param)
    out = []
    for (no_decay, pretrained), params in sorted(groups.items()):
        out.append({
            "params": params,
            "weight_decay": 0.0 if no_decay else weight_decay,
            "lr": tower_lr if pretrained else lr,
            "name": f"{'tower' if pretrained else 'main'}/{'no_decay' if no_decay else 'decay'}",
        })
    if not out:
        raise ValueError("no trainable parameters: every tower and head is frozen")
    return out


def build_optimizer(groups: list[dict[str, Any]], cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = str(cfg.get("name", "adamw")).lower()
    kwargs = dict(betas=tuple(cfg.get("betas", (0.9, 0.999))), eps=float(cfg.get("eps", 1e-8)))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=float(cfg["lr"]), **kwargs)
    if name == "adam":
        # Plain Adam takes weight decay as L2 in the gradient; LAION-CLAP runs it with 0.
        return torch.optim.Adam(groups, lr=float(cfg["lr"]), **kwargs)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adamw' or 'adam'")


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float = 0.0, schedule: str = "cosine"):
    """Multiplier of the base lr at each step: linear warmup, then cosine decay (or constant)."""
    if schedule not in ("cosine", "constant"):
        raise ValueError(f"unknown lr schedule {schedule!r}; choose 'cosine' or 'constant'")

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant" or total_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
