"""MODEL for `python -m clsp.export`: any reference clsp.loading.load_model takes, plus a DeepSpeed
checkpoint folder and any training checkpoint file, with or without its EMA weights."""

from __future__ import annotations

from pathlib import Path

from clsp.errors import UserError
from clsp.folders import CONFIG_NAME
from clsp.loading import load_model, model_from_checkpoint

TODO = "give a clsp model folder or hub id, clap:<folder>, a .ckpt written by python -m clsp.train, or a released .pt"


def load_source(spec: str, *, use_ema: bool = True):
    """The CLSPModel `spec` names (eval mode)."""
    path = Path(spec)
    try:
        if _is_training_checkpoint(path):
            return model_from_checkpoint(path, use_ema=use_ema)
        return load_model(spec)
    except UserError:
        raise
    except (FileNotFoundError, ValueError, OSError) as exc:  # a missing, foreign or unreadable model
        raise UserError.from_exception(exc, TODO) from exc


def _is_training_checkpoint(path: Path) -> bool:
    """A training checkpoint file (any name but a released .pt/.pth) or a DeepSpeed folder (no config.json)."""
    if path.is_file():
        return path.suffix not in (".pt", ".pth")
    return path.is_dir() and not (path / CONFIG_NAME).exists()
