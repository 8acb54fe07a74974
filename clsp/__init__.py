"""clsp: contrastive language-audio and language-speech pretraining."""

from clsp.config import CLSPConfig
from clsp.model import CLSPModel

__all__ = ["CLSPConfig", "CLSPModel"]
__version__ = "0.1.0"
