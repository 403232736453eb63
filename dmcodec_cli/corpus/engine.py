"""The corpus application's names for the inference engine's encoder (``dmcodec_cli.engine.encoder``)."""

from ..engine.encoder import DTYPES, BatchEncoder, EngineOptions

__all__ = ["DTYPES", "BatchEncoder", "EngineOptions"]
