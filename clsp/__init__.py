"""clsp: contrastive language-audio and language-speech pretraining."""

from __future__ import annotations

__all__ = ["CLSPConfig", "CLSPModel"]
__version__ = "0.1.0"  # before the imports below: clsp.model reads it

from clsp import hf_auto as _hf_auto  # noqa: E402

# transformers' AutoConfig / AutoModel load clsp folders once clsp is imported.
_hf_auto.register()


def __getattr__(name: str):
    # Lazy, so `import clsp` does not pay for the model code (torch, transformers' models) at import time.
    if name == "CLSPModel":
        from clsp.model import CLSPModel

        return CLSPModel
    if name == "CLSPConfig":
        from clsp.config import CLSPConfig

        return CLSPConfig
    raise AttributeError(f"module 'clsp' has no attribute {name!r}")
