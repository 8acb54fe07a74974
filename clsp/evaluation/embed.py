"""Batched embedding of clips and texts, with an on-disk safetensors cache.

The evaluation needs only ``model.encode_audio(audio, sample_rate=...)`` and
``model.encode_text(texts)``, both returning L2-normalised [N, D] tensors. A clip's
embedding must not depend on its batch (the CLSPModel contract), so clips are batched by
length (less padding for variable-length towers) and restored to their order afterwards.

Cache entries are keyed by (model fingerprint, data fingerprint, what was embedded) and
stored as ``<key>.safetensors`` with the captions/keys as JSON metadata, so a re-run on
the same model and data reads neither audio nor model.

Progress (clips/s) goes through tqdm, the bar Lightning already uses, when a `desc` is given.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from clsp.atomic import atomic_path
from clsp.evaluation.clips import Clip, load_audio

__all__ = [
    "EmbeddingCache",
    "PairEmbeddings",
    "model_fingerprint",
    "cache_key",
    "encode_texts",
    "encode_clips",
    "embed_pairs",
]


def model_fingerprint(model: object) -> str | None:
    """A hash of the model's class and weights (names, shapes, sums and a strided sample).

    A model may set a string ``fingerprint`` attribute instead; a model with neither
    parameters nor a fingerprint returns None (and is never cached).
    """
    given = getattr(model, "fingerprint", None)
    if isinstance(given, str):
        return given
    state = model.state_dict() if hasattr(model, "state_dict") else {}
    if not state:
        return None
    h = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}".encode())
    for name in sorted(state):
        t = state[name].detach()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        if t.numel() and (t.is_floating_point() or t.is_complex() or t.dtype != torch.bool):
            flat = t.flatten()
            sample = flat[:: max(1, flat.numel() // 512)][:512]
            stats = torch.cat([sample.double(), flat.double().sum().reshape(1)])
            h.update(stats.cpu().numpy().tobytes())
    return h.hexdigest()[:24]


def cache_key(**parts: object) -> str:
    """A short stable hash of keyword parts (JSON-serialisable)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


class EmbeddingCache:
    """``<root>/<key>.safetensors`` files of tensors plus JSON metadata; `root=None` disables it."""

    def __init__(self, root: str | Path | None):
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.safetensors"

    def load(self, key: str | None) -> tuple[dict[str, torch.Tensor], dict] | None:
        if self.root is None or key is None or not self._path(key).is_file():
            self.misses += 1
            return None

        with safe_open(str(self._path(key)), framework="pt") as f:
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
            meta = json.loads((f.metadata() or {}).get("clsp", "{}"))
        self.hits += 1
        return tensors, meta

    def save(self, key: str | None, tensors: dict[str, torch.Tensor], meta: dict) -> None:
        if self.root is None or key is None:
            return

        self.root.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._path(key)) as tmp:  # a killed run leaves no half-written entry
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"clsp": json.dumps(meta)})

    def get_or_compute(
        self, key: str | None, compute: Callable[[], tuple[dict[str, torch.Tensor], dict]]
    ) -> tuple[dict[str, torch.Tensor], dict]:
        found = self.load(key)
        if found is not None:
            return found
        tensors, meta = compute()
        self.save(key, tensors, meta)
        return tensors, meta


@torch.inference_mode()
def encode_texts(model, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """[len(texts), D] float32 CPU embeddings; each distinct text is encoded once."""
    if len(texts) == 0:
        raise ValueError("no texts to encode")
    unique = list(dict.fromkeys(texts))
    index = {t: i for i, t in enumerate(unique)}
    parts = [model.encode_text(unique[i : i + batch_size]).float().cpu() for i in range(0, len(unique), batch_size)]
    emb = torch.cat(parts)
    return emb[torch.tensor([index[t] for t in texts])]


def _encode_batch(model, batch: list[Clip]) -> torch.Tensor:
    waves = [load_audio(c) for c in batch]
    out: list[torch.Tensor | None] = [None] * len(batch)
    # encode_audio takes one sample rate per call: group the batch by rate.
    for rate in sorted({r for _, r in waves}):
        idx = [i for i, (_, r) in enumerate(waves) if r == rate]
        emb = model.encode_audio([waves[i][0] for i in idx], sample_rate=rate).float().cpu()
        for j, i in enumerate(idx):
            out[i] = emb[j]
    return torch.stack(out)


def _drop_audio(batch: list[Clip]) -> list[Clip]:
    # Streamed clips carry decoded audio; keep only one batch of it in memory.
    for clip in batch:
        clip.audio = None
    return batch


@torch.inference_mode()
def encode_clips(
    model,
    clips: Iterable[Clip],
    batch_size: int = 16,
    on_clip: Callable[[Clip], None] | None = None,
    desc: str | None = None,
) -> tuple[torch.Tensor, list[Clip]]:
    """Embed clips in batches: ([N, D] float32 CPU, the clips in order, decoded audio dropped).

    A list is batched by duration and restored to its order; any other iterable (a shard
    stream) is consumed batch by batch, so memory holds one batch of audio at a time.
    With `desc`, a progress bar on stderr (a terminal) shows clips/s.
    """

    if isinstance(clips, Sequence):
        seq = list(clips)
        order = sorted(range(len(seq)), key=lambda i: seq[i].frames / (seq[i].sample_rate or 1))
        stream: Iterable[Clip] = (seq[i] for i in order)
    else:
        order, stream = None, clips
    done: list[Clip] = []
    parts: list[torch.Tensor] = []
    batch: list[Clip] = []
    bar = tqdm(total=len(order) if order is not None else None, desc=desc, unit="clip", file=sys.stderr,
               disable=desc is None or not sys.stderr.isatty(),  # no bar lines in logs and pipes
               mininterval=1.0, dynamic_ncols=True)
    with bar:
        for clip in stream:
            batch.append(clip)
            if len(batch) == batch_size:
                parts.append(_encode_batch(model, batch))
                done += _drop_audio(batch)
                bar.update(len(batch))
                batch = []
        if batch:
            parts.append(_encode_batch(model, batch))
            done += _drop_audio(batch)
            bar.update(len(batch))
    if not done:
        raise ValueError("no clips to evaluate: the data set is empty")
    if on_clip is not None:
        for clip in done:
            on_clip(clip)
    emb = torch.cat(parts)
    if order is not None:
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order)] = torch.arange(len(order))
        emb = emb[inverse]
        done = seq
    return emb, done


@dataclass
class PairEmbeddings:
    """Clips and their captions, embedded: the input of retrieval and scoring."""

    keys: list[str]
    audio: torch.Tensor  # [N, D]
    captions: list[str]  # [M]
    kinds: list[str]  # [M]
    caption_to_clip: torch.Tensor  # [M] int64
    text: torch.Tensor  # [M, D]


def embed_pairs(
    model,
    clips: Iterable[Clip],
    *,
    cache: EmbeddingCache | None = None,
    key: str | None = None,
    batch_size: int = 16,
    text_batch_size: int = 256,
    desc: str | None = None,
) -> PairEmbeddings:
    """Embed clips and all their captions (cached under `key` when a cache is given; `desc`: progress bar)."""

    def compute() -> tuple[dict[str, torch.Tensor], dict]:
        audio, done = encode_clips(model, clips, batch_size, desc=desc)
        captions = [t for c in done for t in c.captions]
        if not captions:
            raise ValueError("no captions to evaluate: every clip has an empty caption list")
        kinds = [k for c in done for k in c.kinds]
        c2c = torch.repeat_interleave(torch.arange(len(done)), torch.tensor([len(c.captions) for c in done]))
        text = encode_texts(model, captions, text_batch_size)
        meta = {"keys": [c.key for c in done], "captions": captions, "kinds": kinds}
        return {"audio": audio, "text": text, "caption_to_clip": c2c}, meta

    tensors, meta = (cache or EmbeddingCache(None)).get_or_compute(key, compute)
    return PairEmbeddings(
        keys=meta["keys"],
        audio=tensors["audio"],
        captions=meta["captions"],
        kinds=meta["kinds"],
        caption_to_clip=tensors["caption_to_clip"],
        text=tensors["text"],
    )
