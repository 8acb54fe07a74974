"""`python -m clsp.export CKPT OUT`: write a training checkpoint's model as a save_pretrained folder.

CKPT is a .ckpt file or a DeepSpeed ZeRO-2/3 checkpoint folder (merged to fp32 by DeepSpeed's
conversion; needs `pip install 'clsp[deepspeed]'`). With EMA the averaged weights are exported.
"""

from __future__ import annotations

import sys
from pathlib import Path

from clsp.errors import ArgumentParser, UserError, entry_point


@entry_point
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m clsp.export", description=__doc__)
    parser.add_argument("checkpoint", help="a clsp training checkpoint (.ckpt file or DeepSpeed folder), e.g. runs/demo/<id>/checkpoints/best.ckpt")
    parser.add_argument("out", help="output folder (config.json, model.safetensors, tokenizer files)")
    parser.add_argument("--no-ema", action="store_true", help="export the raw weights even if the run kept an EMA")
    args = parser.parse_args(argv)
    from clsp.loading import model_from_checkpoint

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} is a file", "give a folder to write the model into")
    try:
        model = model_from_checkpoint(args.checkpoint, use_ema=not args.no_ema)
    except UserError:
        raise
    except (FileNotFoundError, ValueError) as exc:  # a missing, foreign or unreadable checkpoint
        raise UserError.from_exception(exc, "give a .ckpt written by python -m clsp.train") from exc
    model.save_pretrained(out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
