"""CLSPModel: the dual encoder.

    audio waveforms -> frontend (log-mel, on device) -> audio tower -> pooled + frame features
    captions        -> tokenizer                       -> text tower  -> pooled + token features
    each side       -> head (Linear -> ReLU -> Linear) -> L2 normalise -> joint space

`embed_audio` / `embed_text` are the differentiable batch-level calls the trainer uses;
`encode_audio` / `encode_text` are the user-facing, no-grad calls that also take files,
ragged lists and raw strings. Saving is a folder: config.json, model.safetensors and the
tokenizer files and a model card (never pickle). Saving, loading (folders and hub ids, at any
revision) and `push_to_hub` are huggingface_hub's `PyTorchModelHubMixin`; clsp only says which files
make a folder (`_save_pretrained`, `_from_pretrained`) and what the card shows. A model with a caption
decoder (`clsp.decoder`) keeps that decoder's tokenizer in `decoder_tokenizer/` and captions with `caption`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from huggingface_hub import ModelCard, PyTorchModelHubMixin
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoTokenizer

from clsp import __version__
from clsp.atomic import write_atomic, write_text_atomic
from clsp.audio import build_audio_tower, locate
from clsp.card import MODEL_CARD, card_fields
from clsp.clap import import_clap
from clsp.config import CLSPConfig
from clsp.decoder import CaptionDecoder
from clsp.errors import UserError
from clsp.folders import (
    CARD_NAME,
    CONFIG_NAME,
    WEIGHTS_NAME,
    read_config,
    resolve_folder,
    tied_aliases,
    upgrade_state,
)
from clsp.processor import load_clips, pad_clips, split_windows
from clsp.tokenizer import Tokens, load_tokenizer, tokenize
from clsp.zeroshot import DEFAULT_TEMPLATE, zero_shot

# Buffers that older/newer transformers versions add or drop; never a reason to fail a load.
_IGNORABLE_KEYS = ("position_ids", "token_type_ids")
DECODER_TOKENIZER_DIR = "decoder_tokenizer"  # the caption decoder's tokenizer, inside a model folder


@dataclass
class Embeddings:
    """L2-normalised embeddings [N, D]; with tokens: projected frame/token features, the tower's own, a mask."""

    embeds: torch.Tensor
    tokens: torch.Tensor | None = None  # [N, T, D], L2-normalised
    mask: torch.Tensor | None = None  # [N, T] bool, True = valid
    hidden: torch.Tensor | None = None  # [N, T, H], the tower's last hidden states (what a caption decoder reads)


def projection_head(in_dim: int, dim: int) -> nn.Sequential:
    """LAION-CLAP's head: Linear -> ReLU -> Linear."""
    return nn.Sequential(nn.Linear(in_dim, dim), nn.ReLU(), nn.Linear(dim, dim))


class CLSPModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="clsp",
    tags=["audio", "contrastive", "clap", "clsp"],
    model_card_template=MODEL_CARD,
):
    def __init__(self, config: CLSPConfig, tokenizer=None, decoder_tokenizer=None):
        super().__init__()
        self.audio = build_audio_tower(config.audio)
        # A pretrained audio tower brings its own frontend settings (see clsp.audio.htsat).
        tower_cfg = getattr(self.audio, "cfg", config.audio)
        self.config = config if tower_cfg == config.audio else dataclasses.replace(config, audio=tower_cfg)
        self.text = locate(config.text._target_, "model.text._target_")(config.text)
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(
            config.text.tokenizer or config.text.pretrained or ""
        )
        dim = config.head.dim
        self.audio_head = projection_head(self.audio.hidden_size, dim)
        self.text_head = projection_head(self.text.hidden_size, dim)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.head.logit_scale_init)))
        self.logit_bias = None
        if config.head.logit_bias_init is not None:
            self.logit_bias = nn.Parameter(torch.tensor(float(config.head.logit_bias_init)))
        self.decoder = None  # attends over the tower's frames or the head's projected ones (`decoder_frames`)
        if config.decoder is not None:
            width = self.audio.hidden_size if config.decoder.frames == "tower" else dim
            self.decoder = CaptionDecoder(config.decoder, width, tokenizer=decoder_tokenizer)

    # ------------------------------------------------------------------ basics
    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @property
    def sample_rate(self) -> int:
        return self.config.audio.sample_rate

    def scale(self) -> torch.Tensor:
        """exp(logit_scale), clamped at exp(logit_scale_max)."""
        return self.logit_scale.clamp(max=self.config.head.logit_scale_max).exp()

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the learnable scale to [0, logit_scale_max]; the trainer calls this after every step."""
        self.logit_scale.clamp_(0.0, self.config.head.logit_scale_max)

    def compile_towers(self, **options) -> None:
        """`torch.compile` both towers (`trainer.compile=true`) with dynamic shapes: batches vary in size and
        length (duration buckets), and one graph per tower serves them all (plus one for batch size 1, which
        torch specialises); nothing is padded, so results are eager's. Whisper compiles its transformer only
        (`WhisperTower.compile`). `options` go to torch.compile (e.g. `mode=...`, `backend="aot_eager"`)."""
        options.setdefault("dynamic", True)
        self.audio.compile(**options)
        self.text.compile(**options)

    # ------------------------------------------------------------ batch level
    def embed_audio(self, waveforms: torch.Tensor, lengths: torch.Tensor, return_tokens: bool = False) -> Embeddings:
        """Waveforms [B, T] at `sample_rate` (zero padded) + true lengths [B] -> Embeddings."""
        pooled, frames, mask = self.audio(waveforms, lengths)
        return self._project(self.audio_head, pooled, frames, mask, return_tokens)

    def embed_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_tokens: bool = False) -> Embeddings:
        pooled, tokens, mask = self.text(input_ids, attention_mask)
        return self._project(self.text_head, pooled, tokens, mask, return_tokens)

    @staticmethod
    def _project(head: nn.Module, pooled, tokens, mask, return_tokens: bool) -> Embeddings:
        embeds = F.normalize(head(pooled), dim=-1)
        if not return_tokens:
            return Embeddings(embeds)
        return Embeddings(embeds, F.normalize(head(tokens), dim=-1), mask, tokens)

    def decoder_frames(self, audio: Embeddings) -> torch.Tensor:
        """What the caption decoder cross-attends to (`model.decoder.frames`) in `embed_audio(..., return_tokens=True)`:
        the tower's hidden states or the head's projected frames (`audio.mask` masks both)."""
        return audio.hidden if self.config.decoder.frames == "tower" else audio.tokens

    def tokenize(self, texts: Sequence[str]) -> Tokens:
        cfg = self.config.text
        return tokenize(self.tokenizer, list(texts), cfg.max_length, lowercase=cfg.lowercase,
                        punctuation=cfg.punctuation)

    # ------------------------------------------------------------- user level
    @torch.no_grad()
    def encode_audio(
        self,
        audio,
        sample_rate: int | None = None,
        *,
        long: str = "crop",
        return_tokens: bool = False,
        batch_size: int = 32,
    ) -> torch.Tensor | Embeddings:
        """Embed audio: a tensor [N, T], a list of 1-D arrays/tensors, or a list of file paths.

        Samples are floats in [-1, 1] or integer PCM (int16 etc., scaled to [-1, 1]). `sample_rate` is
        the rate of in-memory audio (default: the tower's); files carry their own. Everything is
        resampled to the tower's rate. Returns L2-normalised [N, D], or Embeddings with frame features
        when `return_tokens=True`. Call `model.eval()` first for deterministic crops (from_pretrained
        returns an eval-mode model).

        Clips longer than the tower's window (`window_seconds`: HTSAT 10 s, Whisper 30 s):
        `long="crop"` leaves them to the tower, as in training: HTSAT embeds the centre window (a random
        one in train mode), or with fusion (`truncation: fusion`) a shrunk view of the whole clip plus
        three windows; Whisper embeds the first window. `long="window"` embeds every window of the clip
        (the last one ending at its end) and averages them, which covers all of a long recording.
        """
        if long not in ("crop", "window"):
            raise ValueError(f"long must be 'crop' or 'window', got {long!r}")
        clips = load_clips(audio, sample_rate, self.sample_rate)
        if long == "window":
            if return_tokens:
                raise ValueError("return_tokens=True needs long='crop': averaged windows have no single frame sequence")
            windows, owner = split_windows(clips, round(self.window_seconds * self.sample_rate))
            embeds = self.encode_audio(windows, self.sample_rate, batch_size=batch_size)
            sums = embeds.new_zeros(len(clips), embeds.shape[1]).index_add_(0, torch.tensor(owner, device=embeds.device),
                                                                             embeds)
            return F.normalize(sums, dim=-1)
        outs = []
        for start in range(0, len(clips), batch_size):
            wave, lengths = pad_clips(clips[start : start + batch_size], self.device)
            outs.append(self.embed_audio(wave, lengths, return_tokens=return_tokens))
        return _concat(outs, return_tokens)

    @property
    def window_seconds(self) -> float:
        """Seconds of audio the audio tower reads at once (its frontend's window)."""
        frontend = getattr(self.audio, "frontend", None)
        samples = getattr(frontend, "max_samples", None)
        return samples / self.sample_rate if samples else self.config.audio.max_seconds

    def zero_shot(self, audio, labels: Sequence[str], template: str | Sequence[str] = DEFAULT_TEMPLATE,
                  sample_rate: int | None = None, *, long: str = "crop") -> torch.Tensor:
        """[N clips, C labels] probabilities (rows sum to 1): softmax of the model's logit scale times the
        cosine of each clip to each label's prompt, "This is a sound of {}." by default (a list of templates
        is averaged; "car_horn" reads "car horn"); the ranking `clsp.eval zeroshot` uses. See `clsp.zeroshot`."""
        return zero_shot(self, audio, labels, template, sample_rate, long=long)

    @torch.no_grad()
    def encode_text(
        self, texts: str | Sequence[str], *, return_tokens: bool = False, batch_size: int = 256
    ) -> torch.Tensor | Embeddings:
        """Embed captions -> L2-normalised [N, D] (or Embeddings with token features)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("encode_text got no texts")
        outs = []
        for start in range(0, len(texts), batch_size):
            tok = self.tokenize(texts[start : start + batch_size])
            ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
            outs.append(self.embed_text(ids, mask, return_tokens=return_tokens))
        return _concat(outs, return_tokens)

    @torch.no_grad()
    def caption(self, audio, sample_rate: int | None = None, *, max_new_tokens: int | None = None,
                num_beams: int | None = None, batch_size: int = 32, **generate_kwargs) -> list[str]:
        """Captions for audio (the inputs `encode_audio` takes) from the caption decoder, through
        transformers' `generate`: greedy, or beam search with `num_beams` > 1 (defaults: the config's
        decoder section). Deterministic in eval mode (from_pretrained returns an eval-mode model)."""
        if self.decoder is None:
            raise UserError("this model has no caption decoder", "load or train a model whose config sets decoder")
        clips = load_clips(audio, sample_rate, self.sample_rate)
        captions: list[str] = []
        for start in range(0, len(clips), batch_size):
            wave, lengths = pad_clips(clips[start : start + batch_size], self.device)
            audio = self.embed_audio(wave, lengths, return_tokens=True)
            captions += self.decoder.caption(self.decoder_frames(audio), audio.mask, max_new_tokens=max_new_tokens,
                                             num_beams=num_beams, **generate_kwargs)
        return captions

    @staticmethod
    def similarity(audio_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
        """Cosine similarity matrix [N_audio, N_text] of (normalised) embeddings."""
        return F.normalize(audio_embeds, dim=-1) @ F.normalize(text_embeds, dim=-1).T

    # ------------------------------------------------------------ save / load
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        results: Mapping | None = None,
        model_card_kwargs: dict | None = None,
        **kwargs,
    ) -> str | None:
        """Write config.json, model.safetensors, the tokenizer files and README.md (the model card)
        to `save_directory`, each file atomically. `results` (e.g. a run's results.json) adds an
        evaluation table to the card. Other arguments (`push_to_hub=True`, `repo_id`) are
        huggingface_hub's."""
        card_kwargs = dict(model_card_kwargs or {})
        if results is not None:
            card_kwargs["results"] = results
        # Written before the mixin's save, which keeps an existing card (a stale one would describe old weights).
        self.save_model_card(save_directory, **card_kwargs)
        return super().save_pretrained(save_directory, model_card_kwargs=card_kwargs, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:

        config = self.portable_config()
        # model_type: what transformers' AutoConfig / AutoModel dispatch on (registered in clsp.hf_auto).
        text = json.dumps({"model_type": "clsp", "clsp_config": config.to_dict(), "clsp_version": __version__}, indent=2)
        write_text_atomic(save_directory / CONFIG_NAME, text)
        tied = tied_aliases(self)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items() if k not in tied}
        write_atomic(save_directory / WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
        self.tokenizer.save_pretrained(str(save_directory))
        if self.decoder is not None:
            self.decoder.tokenizer.save_pretrained(str(save_directory / DECODER_TOKENIZER_DIR))

    def save_model_card(self, save_directory: str | os.PathLike, **card_kwargs) -> None:
        """(Re)write README.md in a saved folder, e.g. once the run's evaluation `results` exist."""
        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        card = str(self.generate_model_card(**card_kwargs))
        write_text_atomic(folder / CARD_NAME, card)

    def generate_model_card(self, results: Mapping | None = None, **kwargs) -> ModelCard:
        """The model card: the towers, a usage example, the evaluation table (given `results`) and the config."""
        return super().generate_model_card(**card_fields(self.config, results), **kwargs)

    def portable_config(self) -> CLSPConfig:
        """This model's config with both towers' full transformers configs inlined, so a saved
        folder rebuilds offline, without fetching the `pretrained` sources again."""
        d = self.config.to_dict()
        d["audio"].update(pretrained=None, hf_config=self.audio.hf_config_dict())
        d["text"].update(pretrained=None, tokenizer=None, hf_config=self.text.hf_config_dict())
        if self.decoder is not None:
            d["decoder"].update(pretrained=None, tokenizer=None, hf_config=self.decoder.hf_config_dict())
        return CLSPConfig.from_dict(d)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        force_download: bool = False,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **overrides,
    ) -> CLSPModel:
        """Load a folder written by `save_pretrained`, or a hub id holding one (at `revision`).

        A transformers-format CLAP checkpoint (config model_type 'clap') is imported
        through `from_clap`. `overrides` set config fields, e.g. `audio={"truncation": "fusion"}`.
        """
        # The whole folder (tokenizer files included) is fetched here; the mixin then reads it locally.
        folder = resolve_folder(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir,
                                force_download=force_download, local_files_only=local_files_only, token=token)
        read_config(folder)  # a clear error for a folder without config.json, before the mixin only warns
        return super().from_pretrained(folder, revision=revision, **overrides)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, config: dict | None = None, revision=None, cache_dir=None,
                         force_download=False, local_files_only=False, token=None, **overrides) -> CLSPModel:
        # `model_id` is the local folder from_pretrained resolved, `config` its config.json; the hub
        # arguments were used there already.
        folder = Path(model_id)
        raw = config if config is not None else read_config(folder)
        if raw.get("model_type") == "clap":
            return cls.from_clap(folder)
        if "clsp_config" not in raw:
            raise ValueError(f"{folder} is not a clsp model: {CONFIG_NAME} has no 'clsp_config'")
        data = raw["clsp_config"]
        for section, values in overrides.items():
            data.setdefault(section, {}).update(values)
        decoder_tokenizer = _load_folder_tokenizer(folder / DECODER_TOKENIZER_DIR) if data.get("decoder") else None
        model = cls(CLSPConfig.from_dict(data), tokenizer=_load_folder_tokenizer(folder),
                    decoder_tokenizer=decoder_tokenizer)
        model.load_weights(folder / WEIGHTS_NAME)
        return model.eval()

    def load_weights(self, file: str | os.PathLike) -> None:
        """Load model.safetensors; stale buffers (position_ids) are ignored, anything else must match."""

        file = Path(file)
        if not file.exists():
            raise FileNotFoundError(f"no {file.name} in {file.parent}: not a complete clsp model folder")
        try:
            state = load_file(str(file))
        except Exception as exc:  # safetensors raises several types for a damaged file
            raise ValueError(f"cannot read weights from {file}: {exc}") from exc
        self.load_state(state, source=str(file))

    def load_state(self, state: dict[str, torch.Tensor], source: str = "state dict") -> None:
        try:
            missing, unexpected = self.load_state_dict(upgrade_state(state), strict=False)
        except RuntimeError as exc:  # a shape mismatch: name the first tensor, on one line
            first = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc).splitlines()[0])
            raise ValueError(f"weights in {source} do not fit this model: {first}") from None
        tied = tied_aliases(self)
        missing = [k for k in missing if not k.endswith(_IGNORABLE_KEYS) and k not in tied]
        unexpected = [k for k in unexpected if not k.endswith(_IGNORABLE_KEYS)]
        if missing or unexpected:
            raise ValueError(
                f"weights in {source} do not fit this model: missing {missing[:5]}"
                f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
            )

    @classmethod
    def from_clap(cls, name_or_path: str | os.PathLike) -> CLSPModel:
        """Import a transformers-format CLAP checkpoint (e.g. laion/clap-htsat-unfused).

        Embeddings then equal `ClapModel.get_audio_features` / `get_text_features` after L2
        normalisation for the same weights and waveform.
        """

        return import_clap(cls, resolve_folder(name_or_path))


# ---------------------------------------------------------------- helpers
def _concat(outs: list[Embeddings], return_tokens: bool) -> torch.Tensor | Embeddings:
    embeds = torch.cat([o.embeds for o in outs])
    if not return_tokens:
        return embeds
    width = max(o.tokens.shape[1] for o in outs)

    def padded(name: str) -> torch.Tensor:  # each batch's [n, T, ...] zero (False) padded to the longest T
        return torch.cat([F.pad(t, (0, 0) * (t.dim() - 2) + (0, width - t.shape[1])) for t in (getattr(o, name) for o in outs)])
    return Embeddings(embeds, padded("tokens"), padded("mask"), padded("hidden"))


def _load_folder_tokenizer(folder: Path):
    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:
        raise ValueError(f"cannot load the tokenizer saved in {folder}: {exc}") from exc
