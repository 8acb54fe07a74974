"""The optimizer's update kernel: fused on CUDA, foreach elsewhere, unless the config says otherwise."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from clsp.training.optim import build_optimizer, kernel_choice
from clsp.training.schema import OptimConfig

ADAMW = OptimConfig(lr=1e-3, weight_decay=0.01, optimizer={"_target_": "torch.optim.AdamW"})


class Plain(torch.optim.Optimizer):
    """An optimizer that knows neither `fused` nor `foreach`."""

    def __init__(self, params, lr: float = 1e-3):
        super().__init__(params, {"lr": lr})


def test_foreach_on_the_cpu_and_fused_on_cuda():
    opt = build_optimizer(nn.Linear(4, 4), ADAMW)
    assert opt.defaults["foreach"] is True and not opt.defaults["fused"]
    cuda = torch.device("cuda")
    assert kernel_choice(torch.optim.AdamW, ADAMW.optimizer, cuda) == {"fused": True}
    assert kernel_choice(torch.optim.Adam, {"_target_": "torch.optim.Adam"}, cuda) == {"fused": True}
    # The device the parameters will train on can be given (DeepSpeed builds the optimizer before moving them).
    opt = build_optimizer(nn.Linear(4, 4), ADAMW, device=cuda)  # fused Adam also runs on CPU tensors
    assert opt.defaults["fused"] is True and not opt.defaults["foreach"]


def test_the_config_overrides_and_other_optimizers_get_nothing():
    opt = build_optimizer(nn.Linear(4, 4), dataclasses.replace(ADAMW, optimizer={"_target_": "torch.optim.AdamW", "foreach": False}))
    assert opt.defaults["foreach"] is False and not opt.defaults["fused"]
    spec = {"_target_": "torch.optim.AdamW", "fused": False}
    assert kernel_choice(torch.optim.AdamW, spec, torch.device("cuda")) == {}
    assert kernel_choice(Plain, {"_target_": "x.Plain"}, torch.device("cuda")) == {}
    opt = build_optimizer(nn.Linear(4, 4), dataclasses.replace(ADAMW, optimizer={"_target_": f"{__name__}.Plain"}))
    assert type(opt) is Plain
