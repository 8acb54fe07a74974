"""DeepSpeed ZeRO-2/3 checkpoint folders export to a save_pretrained model, through DeepSpeed's
ZeRO-to-fp32 conversion: by `python -m clsp.export` and by the end-of-run export.

Lightning runs DeepSpeed on CUDA only, so the folder is written by a real DeepSpeed engine on the
CPU (gloo, one process) around a module shaped like Lightning's (`_forward_module.model.*`) with
Lightning's tag and client state. Skipped where deepspeed is missing or cannot run here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from clsp import CLSPModel

pytestmark = pytest.mark.slow  # end-to-end: `make test` runs it, `pytest -m "not slow"` skips it

pytest.importorskip("deepspeed", reason="deepspeed is not installed (pip install 'clsp[deepspeed]')")

_WRITE = textwrap.dedent("""
    import os, sys, torch, torch.distributed as dist
    from clsp import CLSPConfig, CLSPModel
    stage, run, port = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    dist.init_process_group("gloo")
    import deepspeed
    torch.manual_seed(0)
    model = CLSPModel(CLSPConfig.tiny("whisper"))
    model.tokenizer.save_pretrained(f"{run}/tokenizer")
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, f"{run}/expected.pt")

    class Module(torch.nn.Module):  # Lightning's LightningModule holds the CLSPModel as .model
        def __init__(self):
            super().__init__()
            self.model = model

    class Wrapper(torch.nn.Module):  # Lightning's _LightningModuleWrapperBase
        def __init__(self):
            super().__init__()
            self._forward_module = Module()

    config = {"train_micro_batch_size_per_gpu": 1, "zero_optimization": {"stage": stage},
              "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "torch_adam": True}}}
    wrapper = Wrapper()
    engine, *_ = deepspeed.initialize(model=wrapper, model_parameters=wrapper.parameters(), config=config)
    client = {"clsp": {"model_config": model.portable_config().to_dict()}, "global_step": 0, "epoch": 0}
    engine.save_checkpoint(f"{run}/checkpoints/last.ckpt", client_state=client, tag="checkpoint")
""")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_checkpoint(stage: int, run: Path) -> None:
    run.mkdir(parents=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", _WRITE, str(stage), str(run), str(_free_port())],
                          env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.skip(f"DeepSpeed cannot write a ZeRO-{stage} checkpoint on this machine: {proc.stderr[-500:]}")


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_checkpoint_exports(stage, tmp_path):
    from clsp.export import main as export_main
    from clsp.training.runner import finish

    run = tmp_path / "run"
    _write_checkpoint(stage, run)
    ckpt = run / "checkpoints" / "last.ckpt"
    assert ckpt.is_dir()
    expected = torch.load(run / "expected.pt", weights_only=True)

    assert export_main([str(ckpt), str(tmp_path / "exported")]) == 0
    exported = CLSPModel.from_pretrained(tmp_path / "exported").state_dict()
    assert exported.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(exported[key], expected[key].float(), atol=0, rtol=0, msg=key)

    # The end-of-run export reads the same folder (no best.ckpt: the last one).
    cfg = OmegaConf.create({"data": {"test": None}, "run": {"final_eval": False}})
    results = finish(cfg, run, SimpleNamespace(skipped={}, truncated=0), "cpu")
    assert results["weights"] == "final"
    final = CLSPModel.from_pretrained(run / "model").state_dict()
    for key in expected:
        torch.testing.assert_close(final[key], expected[key].float(), atol=0, rtol=0, msg=key)


def test_folder_that_is_not_a_deepspeed_checkpoint(tmp_path):
    from clsp.export import main as export_main

    (tmp_path / "checkpoints" / "last.ckpt").mkdir(parents=True)
    assert export_main([str(tmp_path / "checkpoints" / "last.ckpt"), str(tmp_path / "out")]) == 2
