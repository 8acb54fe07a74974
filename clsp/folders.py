"""Model folders: their file names, a local folder or hub id resolved to a folder, its config.json,
and writing a file so that a killed process never leaves half of it.

The model (save/load) and the HTSAT tower (`audio.pretrained`) both read such folders, so this sits
below both. Hub ids are fetched with huggingface_hub's `snapshot_download` (its cache, revisions and
offline mode).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from huggingface_hub import snapshot_download

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"


def resolve_folder(name_or_path: str | os.PathLike, *, revision: str | None = None, **hub_kwargs) -> Path:
    """A local folder as is; anything else is a hub id, downloaded (or found in the cache) at `revision`.

    `hub_kwargs` go to `snapshot_download` (cache_dir, token, force_download, local_files_only)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path} is a file, not a model folder")
    name = str(name_or_path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"model folder not found: {name}")

    try:
        return Path(snapshot_download(name, revision=revision, **hub_kwargs))
    except Exception as exc:
        at = f" at revision {revision}" if revision else ""
        raise FileNotFoundError(f"{name} is neither a local model folder nor a reachable hub id{at}: {exc}") from exc


def read_config(folder: Path) -> dict:
    """The folder's config.json as a dict."""
    file = folder / CONFIG_NAME
    if not file.exists():
        raise FileNotFoundError(f"{folder} is not a model folder: no {CONFIG_NAME}")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file} is not valid JSON: {exc}") from exc


# Parameter names older clsp versions wrote: HTSAT's transformers model was `audio.model`, now `audio.encoder`
# as in the other towers. Applied to every state dict clsp loads (folders, checkpoints, converters).
RENAMED_PREFIXES = {"audio.model.": "audio.encoder."}


def upgrade_state(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`state` with parameter names of older clsp versions renamed (`prefix`: e.g. "model." in a checkpoint)."""
    out = {}
    for key, value in state.items():
        for old, new in RENAMED_PREFIXES.items():
            if key.startswith(prefix + old):
                key = prefix + new + key[len(prefix + old):]
        out[key] = value
    return out


def tied_aliases(model: Any) -> set[str]:
    """State-dict keys naming a tensor an earlier key holds (a decoder's LM head tied to its embeddings):
    saved once (safetensors refuses shared tensors) and loaded through the first name."""
    first: set[int] = set()
    aliases = set()
    for key, value in model.state_dict(keep_vars=True).items():
        if id(value) in first:
            aliases.add(key)
        first.add(id(value))
    return aliases
