"""dmcodec: a speech tokenizer built on DM-Codec (arXiv 2410.15017).

    import dmcodec_cli
    codec = dmcodec_cli.load()               # the bundled model; or a name, a path, a hub id; device=...
    encoded = codec.encode("speech.flac")    # or codec.encode(samples, sample_rate=22050)
    audio = codec.decode(encoded)            # float32 [num_samples] at codec.sample_rate
"""

from .api import Codec, load
from .codes import EncodedAudio
from .config import CodecConfig
from .errors import DmcodecError
from .model import CodecOutput, DMCodec

__version__ = "0.1.0"
__all__ = ["Codec", "CodecConfig", "CodecOutput", "DMCodec", "DmcodecError", "EncodedAudio", "__version__", "load"]
