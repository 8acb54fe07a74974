"""A clsp model as two ONNX graphs for onnxruntime, for every tower family.

    audio_encoder.onnx   waveforms [batch, samples] float32 at the model's rate (+ lengths [batch] int64
                         for Whisper) -> embeddings [batch, dim], L2-normalised; log-mel inside the graph
    text_encoder.onnx    input_ids, attention_mask [batch, tokens] int64 -> embeddings [batch, dim]
    tokenizer files, frontend.json (rates, window, text preprocessing), README.md

Exported with `torch.onnx.export(dynamo=True)` from the branch-free modules of clsp.export.graphs, batch
and length dynamic. Each graph is then run with onnxruntime on a probe and compared with torch, so a
graph that computes something else is never written silently. Needs `pip install 'clsp[onnx]'`.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from clsp import checks
from clsp.atomic import write_text_atomic
from clsp.errors import UserError
from clsp.export.graphs import HTSATGraph, TextGraph, WhisperGraph

OPSET = 18
CHECK_ATOL = 1e-4
FRONTEND_FILE = "frontend.json"


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise UserError(f"--format onnx needs onnx, onnxruntime and onnxscript ({exc.name} is missing)",
                        "install them: pip install 'clsp[onnx]'") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's progress lines (stdout), warnings and log lines about itself are not the user's concern."""
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        exporter_log.setLevel(level)


def _export(module: torch.nn.Module, args: tuple, names: list[str], dynamic: dict, file: Path) -> None:
    """torch.onnx.export (dynamo) of `module` in eval mode, value checks off (they would read the inputs)."""
    with torch.no_grad(), checks.disabled(), _quiet():
        program = torch.onnx.export(module.eval(), args, dynamo=True, opset_version=OPSET, input_names=names,
                                    output_names=["embeddings"], dynamic_shapes=dynamic, verbose=False)
        program.save(str(file))


def _audio_probe(model, seconds: list[float]) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(0)
    lengths = [int(s * model.sample_rate) for s in seconds]
    waves = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        waves[i, :n] = 0.1 * torch.randn(n, generator=g)
    return waves.numpy(), np.array(lengths, dtype=np.int64)


def export_audio(model, file: Path) -> None:
    """audio_encoder.onnx; checked against torch on a probe batch (mixed lengths for Whisper)."""
    rate = model.sample_rate
    batch = torch.export.Dim("batch", min=1)
    samples = torch.export.Dim("samples", min=2, max=3600 * rate)  # any clip up to an hour
    if model.config.audio.tower == "whisper":
        waves, lengths = _audio_probe(model, [3.0, 1.5])
        args = (torch.from_numpy(waves), torch.from_numpy(lengths))
        _export(WhisperGraph(model), args, ["waveforms", "lengths"],
                {"waveforms": {0: batch, 1: samples}, "lengths": {0: batch}}, file)
        feeds = [{"waveforms": waves, "lengths": lengths}]
    else:
        waves, _ = _audio_probe(model, [3.0, 3.0])
        _export(HTSATGraph(model), (torch.from_numpy(waves),), ["waveforms"], {"waveforms": {0: batch, 1: samples}},
                file)
        window = int(model.config.audio.max_seconds * rate)
        feeds = [{"waveforms": _audio_probe(model, [n / rate] * 2)[0]} for n in (window // 3, window + window // 3)]
    for feed in feeds:
        lengths = feed.get("lengths", np.full(len(feed["waveforms"]), feed["waveforms"].shape[1]))
        clips = [w[:n] for w, n in zip(feed["waveforms"], lengths)]
        _check(file, feed, model.encode_audio(clips).numpy(), "audio")


def export_text(model, file: Path) -> None:
    """text_encoder.onnx; checked against torch on a probe batch."""
    tokens = model.tokenize(["a probe caption", "a second, rather longer probe caption"])
    batch = torch.export.Dim("batch", min=1)
    width = torch.export.Dim("tokens", min=2, max=model.config.text.max_length)
    _export(TextGraph(model), (tokens.input_ids, tokens.attention_mask), ["input_ids", "attention_mask"],
            {"input_ids": {0: batch, 1: width}, "attention_mask": {0: batch, 1: width}}, file)
    texts = ["one", "a dog barks in the rain", "wind"]
    tokens = model.tokenize(texts)
    feed = {"input_ids": tokens.input_ids.numpy(), "attention_mask": tokens.attention_mask.numpy()}
    _check(file, feed, model.encode_text(texts).numpy(), "text")


def _check(file: Path, feed: dict, expected: np.ndarray, side: str) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    got = session.run(None, feed)[0]
    gap = float(np.abs(got - expected).max())
    if gap > CHECK_ATOL:
        raise RuntimeError(f"onnxruntime's {side} embeddings differ from torch's by {gap:.2e}; please report this")


def frontend_settings(model) -> dict:
    """What a caller needs beside the graphs: input rate and window, and the caption preprocessing."""
    audio, text = model.config.audio, model.config.text
    inputs = ["waveforms", "lengths"] if audio.tower == "whisper" else ["waveforms"]
    return {
        "audio": {"tower": audio.tower, "sample_rate": audio.sample_rate, "max_seconds": audio.max_seconds,
                  "n_mels": audio.n_mels, "n_fft": model.audio.frontend.n_fft,
                  "hop_length": model.audio.frontend.hop_length, "inputs": inputs,
                  **({"truncation": audio.truncation, "padding": audio.padding, "f_min": audio.f_min,
                      "f_max": audio.f_max} if audio.tower == "htsat" else {})},
        "text": {"max_length": text.max_length, "lowercase": text.lowercase, "punctuation": text.punctuation,
                 "pad_token_id": model.tokenizer.pad_token_id},
        "embedding_dim": model.config.head.dim,
        "scale": float(model.scale().detach()),  # logits = cosine x scale
    }


def export_onnx(model, out: str | Path) -> Path:
    """Write audio_encoder.onnx, text_encoder.onnx, the tokenizer files, frontend.json and README.md."""
    from clsp.export.card import onnx_card

    _require_onnx()
    model = model.float().eval()
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    export_audio(model, folder / "audio_encoder.onnx")
    export_text(model, folder / "text_encoder.onnx")
    model.tokenizer.save_pretrained(str(folder))
    write_text_atomic(folder / FRONTEND_FILE, json.dumps(frontend_settings(model), indent=2))
    onnx_card(model).save(folder / "README.md")
    return folder
