"""Optimizer parameter groups and the learning-rate schedule.

The optimizer and scheduler classes come from `optim.optimizer` / `optim.scheduler` (`_target_`
entries); this file decides which parameters decay and at which rate (the groups) and holds the
warmup + cosine schedule LAION-CLAP and CLSP use.

Weight decay never touches biases, norms or the contrastive scales (every parameter with
fewer than two dimensions, plus logit_scale / logit_bias). Pretrained towers can train at
`tower_lr` while new heads and randomly initialised parts use `lr`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from clsp.training.components import call, instantiate
from clsp.training.schema import SCHEDULES, OptimConfig

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


def build_optimizer(model: nn.Module, optim: OptimConfig, pretrained_prefixes: tuple[str, ...] = (),
                    device: torch.device | None = None) -> torch.optim.Optimizer:
    """`optim.optimizer` (a `_target_` class such as torch.optim.AdamW) over the parameter groups.

    `device`: where the parameters will train (default: where they are now); it picks the update kernel
    (`kernel_choice`)."""
    groups = param_groups(model, lr=optim.lr, weight_decay=optim.weight_decay, tower_lr=optim.tower_lr,
                          pretrained_prefixes=pretrained_prefixes)
    factory = instantiate(optim.optimizer, "optim.optimizer", partial=True)
    if device is None:
        device = next(p.device for group in groups for p in group["params"])
    kernel = kernel_choice(getattr(factory, "func", factory), optim.optimizer, torch.device(device))
    return call(factory, "optim.optimizer", groups, lr=optim.lr, **kernel)


def kernel_choice(optimizer_class: Any, spec: Mapping[str, Any], device: torch.device) -> dict[str, bool]:
    """`fused=True` on CUDA (one kernel updates every parameter), else `foreach=True` (one launch per
    group of tensors), for optimizers that take them (torch's Adam, AdamW, SGD, ...). A config that
    sets `fused` or `foreach` itself is left alone; `fused: false` and `foreach: false` give the
    per-parameter loop."""
    if "fused" in spec or "foreach" in spec:
        return {}
    try:
        accepted = inspect.signature(optimizer_class).parameters
    except (TypeError, ValueError):  # not introspectable: pass nothing
        return {}
    if device.type == "cuda" and "fused" in accepted:
        return {"fused": True}
    return {"foreach": True} if "foreach" in accepted else {}


def build_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int):
    """`optim.scheduler` (a `_target_` callable taking the optimizer and total_steps), stepped per step."""
    factory = instantiate(optim.scheduler, "optim.scheduler", partial=True)
    return call(factory, "optim.scheduler", optimizer, total_steps=total_steps)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                  schedule: str = "cosine", min_lr_ratio: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup over `warmup_steps`, then cosine decay to `min_lr_ratio` x lr (or constant)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(int(warmup_steps), int(total_steps),
                                                                  float(min_lr_ratio), str(schedule)))


def lr_factor(warmup_steps: int, total_steps: int, min_ratio: float = 0.0, schedule: str = "cosine"):
    """Multiplier of the base lr at each step: linear warmup, then cosine decay (or constant)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {schedule!r}; choose one of {SCHEDULES}")

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant" or total_steps <= warmup_steps:
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor
