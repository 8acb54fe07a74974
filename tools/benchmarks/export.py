"""Export benchmarks: onnxruntime on the `--format onnx` graphs vs torch eager, on the CPU.

    python tools/bench.py onnx_embed
"""

from __future__ import annotations

import tempfile

import numpy as np
import torch

from benchmarks.common import interleaved
from clsp.config import CLSPConfig
from clsp.export.onnx import export_onnx
from clsp.model import CLSPModel

# Randomly initialised (no download): LAION-CLAP's HTSAT-tiny geometry, and a small RoBERTa (4 layers, width 256,
# the tiny offline tokenizer's 1000-token vocabulary; RoBERTa-base would make one timing run about a minute
# on a 2-core machine), 512-d heads.
HTSAT_TINY = {"patch_embeds_hidden_size": 96, "depths": [2, 2, 6, 2], "num_attention_heads": [4, 8, 16, 32],
              "hidden_size": 768, "window_size": 8, "spec_size": 256}
ROBERTA_SMALL = {"model_type": "roberta", "vocab_size": 1000, "hidden_size": 256, "num_hidden_layers": 4,
                 "num_attention_heads": 4, "intermediate_size": 1024, "max_position_embeddings": 514,
                 "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
CLIPS, SECONDS, CAPTIONS = 32, 10, 256


def _model() -> CLSPModel:
    cfg = CLSPConfig.tiny("htsat").to_dict()
    cfg["audio"]["hf_config"], cfg["text"]["hf_config"], cfg["head"]["dim"] = HTSAT_TINY, ROBERTA_SMALL, 512
    torch.manual_seed(0)
    return CLSPModel(CLSPConfig.from_dict(cfg)).eval()


def _captions() -> list[str]:
    words = "a dog barks loudly while rain falls on a tin roof and a car engine hums in the distance".split()
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, size=rng.integers(4, 16))) for _ in range(CAPTIONS)]


def onnx_embed() -> None:
    """Embeddings/s, onnxruntime vs torch eager: 32 x 10 s clips (HTSAT-tiny, frontend included) and 256 captions
    (small RoBERTa), the same thread count for both."""
    import onnxruntime as ort

    model, threads = _model(), torch.get_num_threads()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    waves = 0.1 * torch.randn(CLIPS, SECONDS * model.sample_rate, generator=torch.Generator().manual_seed(0))
    lengths = torch.full((CLIPS,), waves.shape[1])
    tokens = model.tokenize(_captions())
    with tempfile.TemporaryDirectory() as folder:
        export_onnx(model, folder)
        audio = ort.InferenceSession(f"{folder}/audio_encoder.onnx", options, providers=["CPUExecutionProvider"])
        text = ort.InferenceSession(f"{folder}/text_encoder.onnx", options, providers=["CPUExecutionProvider"])
    print(f"   random HTSAT-tiny + 4-layer 256-wide RoBERTa, CPU, {threads} threads for torch and onnxruntime")
    feeds = {"input_ids": tokens.input_ids.numpy(), "attention_mask": tokens.attention_mask.numpy()}
    runs = {
        f"audio ({CLIPS} x {SECONDS} s)": (CLIPS, lambda: audio.run(None, {"waveforms": waves.numpy()}),
                                          lambda: model.embed_audio(waves, lengths)),
        f"text ({CAPTIONS} captions)": (CAPTIONS, lambda: text.run(None, feeds),
                                        lambda: model.embed_text(tokens.input_ids, tokens.attention_mask)),
    }
    with torch.inference_mode():
        for label, (count, onnx_fn, torch_fn) in runs.items():
            t_onnx, t_torch = interleaved(onnx_fn, torch_fn, repeats=3)
            print(f"   {label}: onnxruntime {count / t_onnx:.1f}/s  torch eager {count / t_torch:.1f}/s  "
                  f"ratio {t_torch / t_onnx:.2f}x")


BENCHMARKS = {"onnx_embed": onnx_embed}
