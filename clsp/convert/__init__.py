"""Importers for the checkpoints the field releases, as CLSPModel folders (safetensors).

    from clsp.convert import convert_laion, convert_wavcaps, convert_htsat, load_source
    model = convert_laion("630k-audioset-best.pt", "models/laion630k")      # -> CLSPModel
    model = convert_wavcaps("HTSAT-BERT-PT.pt", "models/wavcaps", tokenizer="bert-base-uncased")
    convert_htsat("HTSAT_AudioSet_Saved_1.ckpt", "models/htsat-audioset")   # -> an audio tower folder
    model = load_source("630k-best.pt")    # any LAION-CLAP / WavCaps .pt, family read off the keys

One module per source (laion, wavcaps, htsat; transformers-format CLAP folders are clsp.clap); the shared
safe loader and key accounting live in clsp.convert.checkpoint. CLI: `python -m clsp.convert`.
"""

from __future__ import annotations

import os

from clsp.convert.checkpoint import load_checkpoint
from clsp.convert.htsat import convert_htsat
from clsp.convert.laion import convert_laion, is_laion, laion_model
from clsp.convert.wavcaps import convert_wavcaps, is_wavcaps, wavcaps_model
from clsp.errors import UserError

__all__ = ["convert_htsat", "convert_laion", "convert_wavcaps", "load_source"]


def load_source(checkpoint: str | os.PathLike, *, tokenizer: str | None = None):
    """A LAION-CLAP or WavCaps training checkpoint as a CLSPModel, the family read off its keys
    (tokenizer: the family's default, roberta-base / bert-base-uncased, unless given)."""

    expected = "a LAION-CLAP (.pt, state_dict) or WavCaps (.pt, model) checkpoint"
    data = load_checkpoint(checkpoint, expected)  # once: released files are gigabytes (optimizer states)
    for field, test, build in (("state_dict", is_laion, laion_model), ("model", is_wavcaps, wavcaps_model)):
        state = data.get(field)
        if isinstance(state, dict) and test({k.removeprefix("module."): v for k, v in state.items()}):
            return build(data, str(checkpoint), tokenizer=tokenizer) if tokenizer else build(data, str(checkpoint))
    raise UserError(f"{checkpoint}: neither LAION-CLAP nor WavCaps weights", f"expected {expected}; an AudioSet "
                    "HTSAT is an audio tower: python -m clsp.convert htsat CKPT OUT")
