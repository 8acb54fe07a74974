"""clsp: contrastive language-audio and language-speech pretraining."""

from __future__ import annotations

__all__ = ["CLSPConfig", "CLSPModel"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so `import clsp.losses` does not pay for transformers at import time.
    if name == "CLSPModel":
        from clsp.model import CLSPModel

        return CLSPModel
    if name == "CLSPConfig":
        from clsp.config import CLSPConfig

        return CLSPConfig
    raise AttributeError(f"module 'clsp' has no attribute {name!r}")
