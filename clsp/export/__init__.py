"""Exports: a clsp model as a clsp folder, a transformers CLAP folder or ONNX graphs.

    python -m clsp.export MODEL OUT [--format clsp|transformers|onnx] [--push-to-hub REPO]

    from clsp.export import export
    export(model, "out/clap", "transformers")     # ClapModel / ClapProcessor / zero-shot pipeline folder
    export(model, "out/onnx", "onnx")             # audio_encoder.onnx + text_encoder.onnx for onnxruntime

One module per form: clsp.export.transformers (ClapModel folder), clsp.export.onnx (graphs, from the
branch-free modules in clsp.export.graphs), clsp.export.card (their model cards and the upload);
clsp.export.source reads MODEL; `__main__` is the command line.
"""

from __future__ import annotations

from pathlib import Path

FORMATS = ("clsp", "transformers", "onnx")

__all__ = ["FORMATS", "export", "main"]


def export(model, out: str | Path, format: str = "clsp") -> Path:
    """Write the CLSPModel `model` to the folder `out` in `format` (one of FORMATS)."""
    if format == "clsp":
        model.save_pretrained(out)
        return Path(out)
    if format == "transformers":
        from clsp.export.transformers import export_transformers

        return export_transformers(model, out)
    if format == "onnx":
        from clsp.export.onnx import export_onnx

        return export_onnx(model, out)
    raise ValueError(f"unknown export format {format!r}; choose one of {FORMATS}")


def main(argv: list[str] | None = None) -> int:
    """`python -m clsp.export` (see clsp.export.__main__)."""
    from clsp.export.__main__ import main as cli

    return cli(argv)
