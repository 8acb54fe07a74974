"""`python -m clsp.export MODEL OUT [--format clsp|transformers|onnx]`: write a model in another form.

MODEL is a clsp folder or hub id, clap:<folder or hub id>, a training checkpoint (.ckpt file or DeepSpeed
ZeRO-2/3 folder, merged to fp32 by DeepSpeed's conversion; with EMA the averaged weights) or a released
LAION-CLAP / WavCaps .pt. Formats: clsp (a save_pretrained folder, the default), transformers (a folder
ClapModel, ClapProcessor and the zero-shot-audio-classification pipeline load without clsp: HTSAT +
RoBERTa models) and onnx (audio_encoder.onnx + text_encoder.onnx for onnxruntime, every tower).
"""

from __future__ import annotations

import sys
from pathlib import Path

from clsp.errors import ArgumentParser, UserError, entry_point
from clsp.export import FORMATS, export


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m clsp.export", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="clsp folder or hub id, clap:<id>, .ckpt / DeepSpeed folder, or released .pt, "
                                      "e.g. runs/demo/<id>/checkpoints/best.ckpt")
    parser.add_argument("out", help="output folder")
    parser.add_argument("--format", choices=FORMATS, default="clsp", help="what to write (default: clsp)")
    parser.add_argument("--no-ema", action="store_true", help="export the raw weights even if the run kept an EMA")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="upload the written folder (model card included)")
    args = parser.parse_args(argv)
    from clsp.export.source import load_source

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} is a file", "give a folder to write the model into")
    model = load_source(args.model, use_ema=not args.no_ema)
    export(model, out, args.format)
    print(f"wrote {args.out} ({args.format})")
    if args.push_to_hub:
        from clsp.export.card import push_folder

        print(f"uploaded to {push_folder(out, args.push_to_hub)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
