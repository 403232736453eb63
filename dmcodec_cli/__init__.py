"""dmcodec: a speech tokenizer built on DM-Codec (arXiv 2410.15017)."""

from .config import CodecConfig
from .errors import DmcodecError
from .model import CodecOutput, DMCodec

__version__ = "0.1.0"
__all__ = ["CodecConfig", "CodecOutput", "DMCodec", "DmcodecError", "__version__"]
