"""Reading training checkpoints: the model inside a .ckpt, and the newest run to resume."""

from __future__ import annotations

from pathlib import Path

import torch

from clsp.config import CLSPConfig
from clsp.errors import UserError


def load_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True (clsp checkpoints hold tensors and plain data only)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder (a DeepSpeed checkpoint?); convert it with "
                         "lightning.pytorch.utilities.deepspeed.convert_zero_checkpoint_to_fp32_state_dict first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's explanation of weights_only is many lines; keep its reason
        detail = (str(exc).split("WeightsUnpickler error:")[-1].strip().splitlines() or [""])[0]
        raise UserError(f"{path} is not a checkpoint: torch.load(weights_only=True) failed "
                        f"({type(exc).__name__}: {detail})", "give a .ckpt written by python -m clsp.train") from exc


def model_from_checkpoint(path: str | Path, use_ema: bool = True):
    """The CLSPModel saved in a training checkpoint (the EMA weights when the run kept them)."""
    from clsp.model import CLSPModel
    from clsp.text import load_tokenizer

    path = Path(path)
    ckpt = load_checkpoint(path)
    if "clsp" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a clsp training checkpoint (no 'clsp' section)")
    config = CLSPConfig.from_dict(ckpt["clsp"]["model_config"])
    tokenizer_dir = path.resolve().parent.parent / "tokenizer"
    if not tokenizer_dir.exists():
        raise FileNotFoundError(f"tokenizer files not found at {tokenizer_dir} (expected beside the run's checkpoints/)")
    model = CLSPModel(config, tokenizer=load_tokenizer(str(tokenizer_dir)))
    state = ckpt["state_dict"]
    prefix = "ema.module." if use_ema and any(k.startswith("ema.module.") for k in state) else "model."
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    model.load_state(weights, source=str(path))
    return model.eval()


def latest_checkpoint(run_root: str | Path) -> Path:
    """checkpoints/last.ckpt of the newest run folder under `run_root` (runs/<name>)."""
    from clsp.training.callbacks import LAST  # imports Lightning (seconds), which exporting does not need

    run_root = Path(run_root)
    candidates = sorted(run_root.glob(f"*/checkpoints/{LAST}"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"resume=latest: no {run_root}/*/checkpoints/{LAST} to continue from")
    return candidates[-1]
