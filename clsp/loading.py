"""Loading a model from any reference: a saved folder or hub id, a transformers CLAP checkpoint, a released
LAION-CLAP / WavCaps file, or a training checkpoint (.ckpt file or DeepSpeed folder).

This sits above the model and the converters, so that model code never imports checkpoint formats.

A checkpoint written with EMA holds the average in `state_dict` and the raw weights in
`current_model_state` (Lightning's `WeightAveraging` layout). A DeepSpeed ZeRO-2/3 checkpoint is a
folder of per-rank shards; DeepSpeed's own ZeRO-to-fp32 conversion merges them. That converter
unpickles without `weights_only`, so it runs here with weights-only loading forced and only
DeepSpeed's plain-data classes allowed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from clsp.config import CLSPConfig
from clsp.convert import load_source
from clsp.errors import UserError
from clsp.model import DECODER_TOKENIZER_DIR, CLSPModel
from clsp.tokenizer import load_tokenizer


def load_model(spec: str | os.PathLike) -> CLSPModel:
    """Any model reference: a clsp folder or hub id, 'clap:<path or hub id>', a training checkpoint
    (.ckpt), or a released LAION-CLAP / WavCaps checkpoint (.pt/.pth, converted on the fly)."""
    spec = str(spec)
    if spec.startswith("clap:"):
        return CLSPModel.from_clap(spec[len("clap:") :])
    if spec.endswith((".pt", ".pth")):

        return load_source(spec)
    if spec.endswith(".ckpt"):
        return model_from_checkpoint(spec)
    return CLSPModel.from_pretrained(spec)


# Lightning wraps the module under DeepSpeed; its parameter names carry this prefix in the shards.
_DEEPSPEED_PREFIX = "_forward_module."


def load_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict. Files: torch.load with weights_only=True (clsp checkpoints hold tensors and
    plain data only). DeepSpeed folders: the client state with `state_dict` merged to fp32."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        return load_deepspeed_checkpoint(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's explanation of weights_only is many lines; keep its reason
        detail = (str(exc).split("WeightsUnpickler error:")[-1].strip().splitlines() or [""])[0]
        raise UserError(f"{path} is not a checkpoint: torch.load(weights_only=True) failed "
                        f"({type(exc).__name__}: {detail})", "give a .ckpt written by python -m clsp.train") from exc


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Make every torch.load inside (also DeepSpeed's, which asks for weights_only=False) weights-only."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    previous = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        with torch.serialization.safe_globals([LossScaler, ZeroStageEnum, fragment_address]):
            yield
    finally:
        if previous is None:
            os.environ.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
        else:
            os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = previous


def load_deepspeed_checkpoint(folder: str | Path) -> dict:
    """A Lightning DeepSpeed checkpoint folder as one dict: rank 0's client state + fp32 `state_dict`."""
    folder = Path(folder)
    try:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    except ImportError as exc:
        raise ValueError(f"{folder} is a DeepSpeed checkpoint; reading it needs deepspeed "
                         f"(pip install 'clsp[deepspeed]'): {exc}") from None
    latest = folder / "latest"
    tag = latest.read_text().strip() if latest.exists() else "checkpoint"
    states = sorted((folder / tag).glob("*model_states.pt"))
    if not states:
        raise ValueError(f"{folder} is a folder but not a DeepSpeed checkpoint (no {tag}/*model_states.pt)")
    try:
        with _weights_only_loads():
            client = torch.load(states[0], map_location="cpu", weights_only=True)
            weights = get_fp32_state_dict_from_zero_checkpoint(str(folder), tag=tag)
    except Exception as exc:
        raise ValueError(f"cannot convert DeepSpeed checkpoint {folder}: {exc}") from exc
    out = {k: v for k, v in client.items() if k not in ("module", "optimizer")}
    out["state_dict"] = {k.removeprefix(_DEEPSPEED_PREFIX): v for k, v in weights.items()}
    return out


def model_from_checkpoint(path: str | Path, use_ema: bool = True) -> CLSPModel:
    """The CLSPModel saved in a training checkpoint (the EMA weights when the run kept them)."""
    path = Path(path)
    ckpt = load_checkpoint(path)
    if "clsp" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a clsp training checkpoint (no 'clsp' section)")
    config = CLSPConfig.from_dict(ckpt["clsp"]["model_config"])
    tokenizer_dir = path.resolve().parent.parent / "tokenizer"
    if not tokenizer_dir.exists():
        raise FileNotFoundError(f"tokenizer files not found at {tokenizer_dir} (expected beside the run's checkpoints/)")
    decoder_tokenizer = None
    if config.decoder is not None:  # the run folder keeps the caption decoder's tokenizer beside the text one's
        decoder_dir = tokenizer_dir.parent / DECODER_TOKENIZER_DIR
        if not decoder_dir.exists():
            raise FileNotFoundError(f"caption decoder tokenizer files not found at {decoder_dir} (expected beside the "
                                    "run's checkpoints/)")
        decoder_tokenizer = load_tokenizer(str(decoder_dir), "the run's decoder_tokenizer/")
    model = CLSPModel(config, tokenizer=load_tokenizer(str(tokenizer_dir)), decoder_tokenizer=decoder_tokenizer)
    # With EMA, `state_dict` is the average and `current_model_state` the raw weights.
    state = ckpt["state_dict"] if use_ema else ckpt.get("current_model_state", ckpt["state_dict"])
    weights = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    model.load_state(weights, source=str(path))
    return model.eval()
