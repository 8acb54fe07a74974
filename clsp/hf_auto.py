"""transformers' Auto classes load clsp folders: with clsp imported,

    AutoConfig.from_pretrained(folder)   # -> CLSPTransformersConfig (.to_clsp() is the CLSPConfig)
    AutoModel.from_pretrained(folder)    # -> CLSPModel (encode_audio, encode_text, ...)

for folders whose config.json says `"model_type": "clsp"` (every folder clsp saves; older ones load with
CLSPModel.from_pretrained, and `python -m clsp.export OLD NEW` rewrites one). Both are registered through
the Auto classes' own `register`. CLSPModel is a huggingface_hub model, not a transformers
PreTrainedModel, so AutoModel gets a small loader class whose `from_pretrained` returns a CLSPModel;
importing this module costs transformers' config module, not the model code.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, AutoModel, PreTrainedConfig

from clsp.config import CLSPConfig
from clsp.model import CLSPModel
from clsp.tokenizer import load_tokenizer

MODEL_TYPE = "clsp"


class CLSPTransformersConfig(PreTrainedConfig):
    """A clsp config.json as a transformers config: `clsp_config` is the CLSPConfig as a dict."""

    model_type = MODEL_TYPE
    clsp_config: dict | None = None
    clsp_version: str | None = None

    def to_clsp(self) -> CLSPConfig:
        """The CLSPConfig this config.json holds."""
        if not self.clsp_config:
            raise ValueError("this clsp config has no 'clsp_config' section")
        return CLSPConfig.from_dict(self.clsp_config)

    @property
    def audio(self):
        return self.to_clsp().audio

    @property
    def text(self):
        return self.to_clsp().text

    @property
    def head(self):
        return self.to_clsp().head


class CLSPAutoModel:
    """AutoModel's entry for `model_type: clsp`: builds and returns CLSPModel."""

    config_class = CLSPTransformersConfig

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, revision=None, cache_dir=None,
                        force_download=False, local_files_only=False, token=None, subfolder="", **kwargs: Any):
        """CLSPModel.from_pretrained with the hub arguments AutoModel passes; others are not clsp's."""

        for name in ("trust_remote_code", "adapter_kwargs", "proxies", "_from_auto"):  # AutoModel's own plumbing
            kwargs.pop(name, None)
        if model_args or kwargs or subfolder:
            unused = [*map(repr, model_args), *kwargs, *(["subfolder"] if subfolder else [])]
            raise TypeError(f"clsp models take no {', '.join(unused)} in AutoModel.from_pretrained")
        return CLSPModel.from_pretrained(pretrained_model_name_or_path, revision=revision, cache_dir=cache_dir,
                                         force_download=force_download, local_files_only=local_files_only, token=token)

    @classmethod
    def from_config(cls, config: CLSPTransformersConfig, **kwargs: Any):
        """A randomly initialised CLSPModel for `config` (AutoModel.from_config). A saved folder's config names
        no tokenizer (its files are in the folder), so the folder AutoConfig read it from provides one."""

        clsp_config = config.to_clsp()
        named = clsp_config.text.tokenizer or clsp_config.text.pretrained
        if not named and not config.name_or_path:
            raise ValueError("this clsp config names no tokenizer; load it with AutoConfig.from_pretrained(folder)")
        return CLSPModel(clsp_config, tokenizer=None if named else load_tokenizer(config.name_or_path))

    _from_config = from_config


def register() -> None:
    """Register `model_type: clsp` with AutoConfig and AutoModel (idempotent)."""
    AutoConfig.register(MODEL_TYPE, CLSPTransformersConfig, exist_ok=True)
    AutoModel.register(CLSPTransformersConfig, CLSPAutoModel, exist_ok=True)
