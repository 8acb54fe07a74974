"""Model configuration: a plain dataclass tree that round-trips through JSON.

`CLSPConfig` = an audio tower, a text tower, the projection heads and, optionally, a caption decoder
(`decoder`: None by default, and then left out of the JSON, so folders without one are unchanged). Each tower section names
the class that runs it (`_target_`, an import path, as every component of a training config),
so a config says what it builds. Presets for the tower pairs live in `configs/model/*.yaml` (the
Hydra model group) and load with `CLSPConfig.preset(name)`; `CLSPConfig.tiny()` is the small
random pair used by the demo and the tests. Old `config.json` files (`"tower": "htsat"`) load too.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from clsp.resources import config_dir, load_yaml
from clsp.validate import require

# The audio towers clsp ships, by short name; a config may also name any class with their interface.
AUDIO_TOWERS = {"htsat": "clsp.audio.htsat.HTSATTower", "whisper": "clsp.audio.whisper.WhisperTower"}
TEXT_TOWER = "clsp.text.TextTower"
TEXT_POOLINGS = ("pooler", "cls", "mean")
HTSAT_TRUNCATIONS = ("rand_trunc", "fusion")
HTSAT_PADDINGS = ("repeatpad", "repeat", "pad")  # LAION repeats short clips; WavCaps zero-pads ("pad")
DECODER_FRAMES = ("tower", "projected")  # what a caption decoder reads (DecoderConfig.frames)
# Attention kernels: "sdpa" = torch's fused scaled_dot_product_attention (HTSAT: clsp.audio.swin_attention;
# Whisper and text: transformers' own SDPA path), "eager" = transformers' reference matmul-softmax-matmul.
ATTN_IMPLEMENTATIONS = ("sdpa", "eager")


@dataclass
class AudioConfig:
    """The audio tower and its log-mel frontend."""

    _target_: str = AUDIO_TOWERS["htsat"]  # HTSATTower (general audio, LAION-CLAP) or WhisperTower (speech)
    # Hub id or folder to load weights from; None = random init. For htsat: a converted audio tower
    # (`python -m clsp.convert htsat`), a clsp model folder or a transformers CLAP folder; the tower then
    # takes the source's architecture and frontend (rate, hop, mels, padding), which its weights need.
    pretrained: str | None = None
    hf_config: dict[str, Any] = field(default_factory=dict)  # transformers config fields (random init / overrides)
    sample_rate: int = 48000
    n_mels: int = 64
    max_seconds: float = 10.0
    truncation: str = "rand_trunc"  # htsat: "rand_trunc" or "fusion" for clips longer than the window
    padding: str = "repeatpad"  # htsat: how shorter clips fill the window: repeatpad | repeat | pad (zeros)
    f_min: float = 50.0  # htsat only
    f_max: float = 14000.0  # htsat only
    n_fft: int | None = None  # None = the tower's standard (htsat 1024, whisper 400)
    hop_length: int | None = None  # None = the tower's standard (htsat 480, whisper 160)
    gradient_checkpointing: bool = False
    freeze: bool = False
    attn_implementation: str = "sdpa"  # "sdpa" (fused kernels) or "eager"; same weights, same results

    @property
    def tower(self) -> str:
        """The short name of the tower ("htsat", "whisper"), or the class path of another one."""
        return next((name for name, target in AUDIO_TOWERS.items() if target == self._target_), self._target_)


@dataclass
class TextConfig:
    """The text tower: any Hugging Face encoder and its tokenizer."""

    _target_: str = TEXT_TOWER
    pretrained: str | None = "roberta-base"  # hub id or folder; None = random init from hf_config
    hf_config: dict[str, Any] = field(default_factory=dict)  # needs "model_type" when pretrained is None
    tokenizer: str | None = None  # defaults to `pretrained`; "clsp:tiny-bpe" = the offline tiny tokenizer
    pooling: str = "pooler"  # "pooler" (LAION-CLAP), "cls" or "mean"
    max_length: int = 77
    # Caption preprocessing before tokenizing, applied alike in training, encode_text and evaluation
    # (WavCaps: lower-case and each of (),.!?;:|*" replaced by a space).
    lowercase: bool = False
    punctuation: str = ""  # characters replaced by a space
    gradient_checkpointing: bool = False
    freeze: bool = False
    attn_implementation: str = "sdpa"  # "sdpa" (fused kernels) or "eager"; same weights, same results


@dataclass
class HeadConfig:
    """Projection heads (Linear -> ReLU -> Linear) and the contrastive scales."""

    dim: int = 512  # joint width: both heads are Linear(tower width, dim) -> ReLU -> Linear(dim, dim)
    logit_scale_init: float = math.log(1 / 0.07)
    # The clamp of the learnable scale. LAION clamps at ln 100; a converted WavCaps model keeps its 1/temp
    # (which WavCaps never clamps), so its config raises this to fit.
    logit_scale_max: float = math.log(100.0)
    logit_bias_init: float | None = None  # set (e.g. -10) for the sigmoid loss


@dataclass
class DecoderConfig:
    """The caption decoder: a Hugging Face causal LM with cross-attention over the audio frames."""

    pretrained: str | None = None  # hub id or folder of a causal LM (e.g. "gpt2"); None = random init from hf_config
    hf_config: dict[str, Any] = field(default_factory=dict)  # needs "model_type" when pretrained is None
    tokenizer: str | None = None  # defaults to `pretrained`; "clsp:tiny-bpe" = the offline tiny tokenizer
    max_length: int = 64  # training caption tokens, <bos> and <eos> included; longer captions are cut
    max_new_tokens: int = 30  # generation defaults, overridable per `caption()` call
    num_beams: int = 1
    gradient_checkpointing: bool = False
    freeze: bool = False
    # What the decoder cross-attends to: "tower" = the audio tower's frames, as CoCa's and Whisper's decoders
    # read their encoder; "projected" = the contrastive head's L2-normalised frames (`return_tokens=True`).
    # The head is trained to pool well, not to keep time: a linear probe on a demo_caption model's frames
    # (the means of its first quarter, last quarter and all frames) reads a pitch contour in 85 % of
    # held-out clips from the tower's frames, in 69 % from the projected ones.
    frames: str = "tower"

    @classmethod
    def tiny(cls) -> DecoderConfig:
        """A tiny random GPT-2 with the offline tiny tokenizer, for the demo and the tests."""
        return cls(tokenizer="clsp:tiny-bpe", max_length=48, max_new_tokens=20, hf_config={
            "model_type": "gpt2", "vocab_size": 1000, "n_embd": 64, "n_layer": 2, "n_head": 2, "n_positions": 64})


@dataclass
class CLSPConfig:
    audio: AudioConfig = field(default_factory=AudioConfig)
    text: TextConfig = field(default_factory=TextConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    decoder: DecoderConfig | None = None  # a caption decoder (CLSPModel.caption); None = a plain dual encoder

    def __post_init__(self) -> None:
        # Accept plain dicts for the sub-configs (from JSON or Hydra).
        for name, cls in (("audio", AudioConfig), ("text", TextConfig), ("head", HeadConfig), ("decoder", DecoderConfig)):
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _from_dict(cls, value, name))
        self.validate()

    def validate(self) -> None:
        require("model.text", "pooling", self.text.pooling, choices=TEXT_POOLINGS)
        if self.audio.tower == "htsat":
            require("model.audio", "truncation", self.audio.truncation, choices=HTSAT_TRUNCATIONS)
            require("model.audio", "padding", self.audio.padding, choices=HTSAT_PADDINGS)
        if self.decoder is not None:
            require("model.decoder", "frames", self.decoder.frames, choices=DECODER_FRAMES)
        require("model.audio", "sample_rate", self.audio.sample_rate, int, ge=1)
        require("model.audio", "max_seconds", self.audio.max_seconds, float, gt=0)
        require("model.text", "max_length", self.text.max_length, int, ge=2)
        require("model.head", "dim", self.head.dim, int, ge=1)
        for side in ("audio", "text"):
            require(f"model.{side}", "attn_implementation", getattr(self, side).attn_implementation,
                    choices=ATTN_IMPLEMENTATIONS)
        if self.head.logit_scale_init > self.head.logit_scale_max:
            raise ValueError(f"head.logit_scale_init ({self.head.logit_scale_init:.4f}) is above head.logit_scale_max "
                             f"({self.head.logit_scale_max:.4f}); raise logit_scale_max to keep the scale")
        if self.text.pretrained is None and "model_type" not in self.text.hf_config:
            raise ValueError("model.text.hf_config needs a 'model_type' when model.text.pretrained is null")
        if self.decoder is not None:
            _validate_decoder(self.decoder)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["decoder"] is None:  # a model without a decoder writes the same config.json as before
            del data["decoder"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CLSPConfig:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown model config section(s) {sorted(unknown)}")
        return cls(**{k: None if v is None else dict(v) for k, v in data.items()})

    @classmethod
    def preset(cls, name: str) -> CLSPConfig:
        """A tower-pair preset from configs/model/<name>.yaml (e.g. 'htsat_tiny_roberta')."""

        path = config_dir() / "model" / f"{name}.yaml"
        if not path.exists():
            names = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
            raise ValueError(f"unknown model preset {name!r}; choose one of {names}")
        return cls.from_dict(load_yaml(path))

    @classmethod
    def tiny(cls, audio: str = "whisper") -> CLSPConfig:
        """A tiny random tower pair for the demo and the tests (no downloads)."""
        return cls.preset(f"tiny_{audio}")


def _validate_decoder(cfg: DecoderConfig) -> None:
    if cfg.pretrained is None and "model_type" not in cfg.hf_config:
        raise ValueError("model.decoder.hf_config needs a 'model_type' when model.decoder.pretrained is null")
    require("model.decoder", "max_length", cfg.max_length, int, ge=2)
    require("model.decoder", "max_new_tokens", cfg.max_new_tokens, int, ge=1)
    require("model.decoder", "num_beams", cfg.num_beams, int, ge=1)


_RUNTIME_KEYS = ("transformers_version", "architectures", "_name_or_path", "torch_dtype", "dtype")


def portable_hf_config(hf_config: Any) -> dict[str, Any]:
    """A transformers config as a plain dict without run-time keys, so a saved model rebuilds offline."""
    return {k: v for k, v in hf_config.to_dict().items() if k not in _RUNTIME_KEYS}


# Keys older config.json files carry that no longer mean anything (the audio pooling is fixed per tower).
_RETIRED = {"audio": ("pooling",)}


def _from_dict(cls: type, data: dict[str, Any], section: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    data = {k: v for k, v in data.items() if k not in _RETIRED.get(section, ())}
    if section == "audio" and "tower" in data:  # written before towers were named by `_target_`
        tower = data.pop("tower")
        if tower not in AUDIO_TOWERS:
            raise ValueError(f"unknown audio tower {tower!r}; choose one of {list(AUDIO_TOWERS)}")
        data.setdefault("_target_", AUDIO_TOWERS[tower])
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)} in model config section {section!r}")
    return cls(**data)
