"""`python -m clsp.export MODEL OUT --format onnx`: onnxruntime on the graphs gives clsp's embeddings, for
HTSAT (plain and fused) and Whisper (a batch of mixed lengths), and the snippet in docs/export.md runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from export_models import clips, saved_model, tiny_htsat

from clsp import CLSPConfig
from clsp.export import main
from clsp.export.card import ONNX_SNIPPET
from clsp.model import pad_clips

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
EXPORT_DOC = Path(__file__).resolve().parents[2] / "docs" / "export.md"
MODELS = {"htsat": lambda: tiny_htsat(), "htsat-fused": lambda: tiny_htsat(fusion=True),
          "whisper": lambda: CLSPConfig.tiny("whisper")}


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("onnx")
    model, folder = saved_model(MODELS[request.param](), tmp / "clsp")
    assert main([str(folder), str(tmp / "onnx"), "--format", "onnx"]) == 0
    session = {side: ort.InferenceSession(str(tmp / "onnx" / f"{side}_encoder.onnx"), providers=["CPUExecutionProvider"])
               for side in ("audio", "text")}
    return SimpleNamespace(model=model, folder=tmp / "onnx", session=session, rate=model.sample_rate)


def _run_audio(e, waves: list[np.ndarray]) -> np.ndarray:
    batch, lengths = pad_clips(waves)
    feeds = {"waveforms": batch.numpy()}
    if e.model.config.audio.tower == "whisper":
        feeds["lengths"] = lengths.numpy()
    return e.session["audio"].run(None, feeds)[0]


def test_audio_matches_torch(exported):
    e = exported
    if e.model.config.audio.tower == "whisper":
        batches = [clips(e.rate, [1.0, 4.0, 7.5, 12.3], seed=1), clips(e.rate, [2.5])]  # mixed lengths batch
    else:  # each row one whole clip: a batch per length, under, at and over the 10 s window
        batches = [clips(e.rate, [s] * n, seed=i) for i, (s, n) in enumerate([(4, 3), (7.5, 1), (10, 2), (13, 2)])]
    for waves in batches:
        got = _run_audio(e, waves)
        np.testing.assert_allclose(got, e.model.encode_audio(waves).numpy(), atol=1e-4, rtol=0)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_text_matches_torch(exported):
    e = exported
    for texts in (["beep"], ["a dog barks", "rain on a roof with wind and thunder", "a", " ".join(["noise"] * 90)]):
        tokens = e.model.tokenize(texts)
        got = e.session["text"].run(None, {"input_ids": tokens.input_ids.numpy(),
                                           "attention_mask": tokens.attention_mask.numpy()})[0]
        np.testing.assert_allclose(got, e.model.encode_text(texts).numpy(), atol=1e-4, rtol=0)


def test_files_beside_the_graphs(exported):
    e = exported
    names = {p.name for p in e.folder.iterdir()}
    assert {"audio_encoder.onnx", "text_encoder.onnx", "tokenizer.json", "frontend.json", "README.md"} <= names
    settings = json.loads((e.folder / "frontend.json").read_text())
    assert settings["audio"]["sample_rate"] == e.rate and settings["embedding_dim"] == e.model.config.head.dim
    audio_inputs = [i.name for i in onnx.load(str(e.folder / "audio_encoder.onnx")).graph.input]
    assert audio_inputs == settings["audio"]["inputs"]
    # Batch and length are dynamic (named dimensions, not numbers).
    for file in ("audio_encoder.onnx", "text_encoder.onnx"):
        for graph_input in onnx.load(str(e.folder / file)).graph.input:
            dims = graph_input.type.tensor_type.shape.dim
            assert all(d.dim_param for d in dims), (file, graph_input.name)
    assert (e.folder / "README.md").read_text().startswith("---\nlibrary_name: onnx\n")


def test_export_doc_snippet_runs_with_numpy_onnxruntime_tokenizers(exported):
    e = exported
    block = re.search(r"<!-- onnx-snippet.*?```python\n(.*?)```", EXPORT_DOC.read_text(), re.S).group(1)
    assert block.replace('folder = "OUT"', 'folder = "."') == ONNX_SNIPPET  # the card shows the same code
    assert ONNX_SNIPPET in (e.folder / "README.md").read_text()
    imports = set(re.findall(r"^(?:import|from) (\w+)", block, re.M))
    assert imports == {"json", "numpy", "onnxruntime", "tokenizers"}
    scope: dict = {}
    exec(block.replace('folder = "OUT"', f'folder = "{e.folder}"'), scope)
    np.testing.assert_allclose(scope["a"], e.model.encode_audio(torch.from_numpy(scope["waves"])).numpy(), atol=1e-4)
    np.testing.assert_allclose(scope["t"], e.model.encode_text(["a dog barks", "rain on a roof"]).numpy(), atol=1e-4)
