"""`python -m clsp.convert {laion,wavcaps,htsat} CKPT OUT ...`: released checkpoints -> clsp folders.

    python -m clsp.convert laion 630k-audioset-best.pt models/laion630k [--tokenizer roberta-base]
        [--amodel HTSAT-tiny|HTSAT-base] [--fusion | --no-fusion]
    python -m clsp.convert wavcaps HTSAT-BERT-PT.pt models/wavcaps [--tokenizer bert-base-uncased]
    python -m clsp.convert htsat HTSAT_AudioSet_Saved_1.ckpt models/htsat-audioset

laion / wavcaps write a folder `CLSPModel.from_pretrained` loads; htsat writes an audio tower
folder for `model.audio.pretrained`. Bad input prints one `error: ...` line and exits 2.
"""

from __future__ import annotations

import argparse
import sys

from clsp.convert import convert_htsat, convert_laion, convert_wavcaps
from clsp.errors import ArgumentParser, entry_point


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m clsp.convert", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="source", required=True)
    laion = sub.add_parser("laion", help="LAION-CLAP original training checkpoint (630k-*.pt, music/speech)")
    wavcaps = sub.add_parser("wavcaps", help="WavCaps / FusionAudio retrieval model (ASE: HTSAT + BERT)")
    htsat = sub.add_parser("htsat", help="AudioSet-pretrained HTSAT (sed_model.*): an audio tower")
    for s in (laion, wavcaps, htsat):
        s.add_argument("checkpoint", help="the released checkpoint file")
        s.add_argument("out", help="output folder")
    laion.add_argument("--tokenizer", default="roberta-base", help="hub id or folder (default roberta-base)")
    laion.add_argument("--amodel", choices=["HTSAT-tiny", "HTSAT-base"], default=None,
                       help="check the audio size (default: read off the weights)")
    laion.add_argument("--fusion", action=argparse.BooleanOptionalAction, default=None,
                       help="check the fusion setting (default: read off the weights)")
    wavcaps.add_argument("--tokenizer", default=None,
                         help="hub id or folder (default: the file's text encoder, bert-base-uncased)")
    return p


@entry_point
def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.source == "htsat":

        folder = convert_htsat(args.checkpoint, args.out)
        print(f"wrote audio tower {folder} (start a model from it: model.audio.pretrained={folder})")
        return 0
    if args.source == "laion":

        model = convert_laion(args.checkpoint, args.out, tokenizer=args.tokenizer, amodel=args.amodel,
                              fusion=args.fusion)
    else:

        model = convert_wavcaps(args.checkpoint, args.out, tokenizer=args.tokenizer)
    info = ", ".join(f"{k} {v}" for k, v in getattr(model, "source_info", {}).items())
    print(f"wrote {args.out} ({info}; scale {float(model.scale()):.4g}, joint dim {model.config.head.dim})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
