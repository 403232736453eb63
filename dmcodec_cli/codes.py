"""Code files: bare ``.npy`` arrays of int16 codes [n_q, frames], or self-describing ``.npz`` files
(the codes and a JSON header: model fingerprint, original length, rate, arithmetic), checked before decoding.

A ``.npz`` code file (format ``dmcodec-code-file``, version 1) is an uncompressed zip of two arrays that
numpy reads without unpickling: ``codes`` int16 [n_q, frames] and ``header``, a 0-d unicode string
holding the JSON object ``{"format", "format_version", "model_fingerprint", "num_samples",
"sample_rate", "n_q", "dtype"}``. Reading one checks the zip's member list and sizes, each array's
header against its size, and every field of the JSON before the codes are used.
"""

from __future__ import annotations

import json
import math
import os
import re
import tokenize
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from .atomic import atomic_path
from .config import RANGES, CodecConfig
from .engine.encoder import DTYPES
from .errors import DmcodecError

NPZ_FORMAT = "dmcodec-code-file"
NPZ_VERSION = 1
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
_MEMBERS = {"codes.npy", "header.npy"}
_MAX_HEADER_BYTES = 1 << 16


@dataclass(frozen=True)
class EncodedAudio:
    """The codes of one signal with what decoding needs: which model made them and the original length.

    ``codes`` are integers [n_q, frames] with ``frames = ceil(num_samples / hop)``; ``num_samples`` is the
    length at ``sample_rate`` (the model's); ``dtype`` the encoder arithmetic (fp32, bf16 or fp16).
    """

    codes: np.ndarray
    num_samples: int
    sample_rate: int
    model_fingerprint: str
    dtype: str = "fp32"

    @property
    def n_q(self) -> int:
        return int(self.codes.shape[0])

    @property
    def frames(self) -> int:
        return int(self.codes.shape[1])

    @property
    def duration(self) -> float:
        """Seconds of the original signal."""
        return self.num_samples / self.sample_rate

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write a ``.npz`` code file (atomically). An existing file is replaced only when it is a code file
        dmcodec wrote, or with ``overwrite=True``; a name not ending in ``.npz`` is refused (DmcodecError)."""
        check_npz_target(Path(path), overwrite)
        save_encoded(path, self)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EncodedAudio":
        """Read a ``.npz`` code file written by ``save`` (validated, never unpickled)."""
        return load_encoded(path)


def check_codes(codes: np.ndarray, config: CodecConfig, source: str = "codes") -> np.ndarray:
    """Validate codes [n_q, frames] for ``config``; returns them as int64. Raises DmcodecError."""
    if codes.ndim != 2:
        raise DmcodecError(f"{source}: codes must have shape [n_q, frames], got {list(codes.shape)}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise DmcodecError(f"{source}: codes must be integers, got {codes.dtype}")
    n_q, frames = codes.shape
    if n_q == 0 or frames == 0:
        raise DmcodecError(f"{source}: empty codes (shape {list(codes.shape)})")
    if n_q > config.n_q:
        raise DmcodecError(f"{source}: {n_q} codebooks but the model has only {config.n_q}; "
                           "use the model that made these codes")
    low, high = int(codes.min()), int(codes.max())
    if low < 0 or high >= config.codebook_size:
        raise DmcodecError(f"{source}: code values must lie in [0, {config.codebook_size - 1}] for this model, "
                           f"found [{low}, {high}]")
    return codes.astype(np.int64)


def check_encoded(encoded: EncodedAudio, config: CodecConfig, fingerprint: str, force: bool = False,
                  source: str = "codes") -> np.ndarray:
    """Codes that the model of ``config`` / ``fingerprint`` can decode to ``encoded.num_samples`` -> int64
    [n_q, frames]. Codes of another model are refused unless ``force``; a rate or length that does not fit
    the model always is."""
    if encoded.model_fingerprint != fingerprint and not force:
        raise DmcodecError(f"{source}: made by model {encoded.model_fingerprint[:16]}, not this one "
                           f"({fingerprint[:16]}); pass the model that made them with --model (or --force to "
                           "decode them anyway)")
    if encoded.sample_rate != config.sample_rate:
        raise DmcodecError(f"{source}: codes of {encoded.sample_rate} Hz audio, but the model works at "
                           f"{config.sample_rate} Hz; use the model that made them")
    codes = check_codes(encoded.codes, config, source)
    check_num_samples(encoded.num_samples, codes.shape[1], config.hop_length, source)
    return codes


def check_num_samples(num_samples: int, frames: int, hop: int, source: str = "codes") -> int:
    """A length that ``frames`` frames of ``hop`` samples decode to: ceil(num_samples / hop) == frames."""
    if not (frames - 1) * hop < num_samples <= frames * hop:
        raise DmcodecError(f"{source}: {frames} frames decode to {(frames - 1) * hop + 1}..{frames * hop} "
                           f"samples, not {num_samples}")
    return num_samples


def check_npz_target(path: Path, overwrite: bool) -> None:
    """Where ``EncodedAudio.save`` may write: a ``.npz`` name, not a folder, and not over a file dmcodec did not
    write (the audio the codes came from, say) unless ``overwrite``."""
    if path.suffix.lower() != ".npz" or path.is_dir():
        raise DmcodecError(f"{path}: a code file is one .npz file; give a name such as codes.npz")
    if os.path.lexists(path) and not overwrite and not is_code_file(path):
        raise DmcodecError(f"{path}: exists and is not a dmcodec code file; pass overwrite=True to replace it or "
                           "choose another name")


def save_codes(path: str | os.PathLike, codes: np.ndarray) -> None:
    """Write codes [n_q, frames] as int16 ``.npy``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(codes, dtype=np.int16))


def save_encoded(path: str | os.PathLike, encoded: EncodedAudio) -> None:
    """Write ``encoded`` as a ``.npz`` code file (int16 codes and the JSON header), atomically."""
    header = {"format": NPZ_FORMAT, "format_version": NPZ_VERSION, "model_fingerprint": encoded.model_fingerprint,
              "num_samples": int(encoded.num_samples), "sample_rate": int(encoded.sample_rate),
              "n_q": encoded.n_q, "dtype": encoded.dtype}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, codes=np.asarray(encoded.codes, dtype=np.int16), header=np.array(json.dumps(header)))


def _bad_npy(path: Path, exc: BaseException) -> DmcodecError:
    return DmcodecError(f"{path}: not a readable .npy code file ({str(exc).splitlines()[0]}); "
                        "code files are written by dmcodec encode")


def _read_header(f: IO[bytes], size: int, path: Path, codes: bool = True) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the ``.npy`` header at the start of ``f`` (``size`` bytes in all), checked before
    anything is allocated: no Python objects (nothing is unpickled), integer codes [n_q, frames] when
    ``codes``, and a data size equal to what the header claims."""
    try:
        version = np.lib.format.read_magic(f)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f".npy version {version[0]}.{version[1]} is not supported")
        shape, _fortran, dtype = readers[version](f)
    except (ValueError, EOFError, SyntaxError, TypeError, RecursionError, tokenize.TokenError) as exc:
        raise _bad_npy(path, exc) from None
    if dtype.hasobject:
        raise DmcodecError(f"{path}: refused: the array holds Python objects (pickled data, which could run code); "
                           "code files hold integer codes only")
    if codes and not np.issubdtype(dtype, np.integer):
        raise DmcodecError(f"{path}: codes must be integers, the file holds {dtype}")
    if codes and len(shape) != 2:
        raise DmcodecError(f"{path}: codes must have shape [n_q, frames], the file holds {list(shape)}")
    expected, actual = math.prod(shape) * dtype.itemsize, size - f.tell()
    if expected != actual:
        raise DmcodecError(f"{path}: the header claims {list(shape)} {dtype} ({expected:,} bytes) but the file holds "
                           f"{actual:,} bytes of data; the file is truncated or damaged")
    return shape, dtype


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DmcodecError(f"{path}: no such file")
    return path


def load_codes(path: str | os.PathLike, config: CodecConfig) -> np.ndarray:
    """Read and validate a ``.npy`` code file -> int64 [n_q, frames]. Never unpickles.

    The header is checked first (integer dtype, 2 dimensions, data size == file size), so a header that
    claims an absurd shape is refused before any allocation."""
    path = _existing_file(path)
    try:
        with open(path, "rb") as f:
            _read_header(f, path.stat().st_size, path)
        codes = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise DmcodecError(f"{path}: cannot read the code file ({exc.strerror or exc})") from None
    except (ValueError, EOFError) as exc:
        raise _bad_npy(path, exc) from None
    return check_codes(codes, config, str(path))


def load_encoded(path: str | os.PathLike) -> EncodedAudio:
    """Read and validate a ``.npz`` code file -> EncodedAudio (codes int64). Never unpickles.

    The zip must hold exactly ``codes.npy`` and ``header.npy``, stored uncompressed; each array's header
    is checked against its size before it is read, then every field of the JSON header."""
    path = _existing_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = _read_members(path, archive)
    except OSError as exc:
        raise DmcodecError(f"{path}: cannot read the code file ({exc.strerror or exc})") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError,
            RuntimeError) as exc:  # RuntimeError: an encrypted member
        raise DmcodecError(f"{path}: not a readable .npz code file ({str(exc).splitlines()[0]}); "
                           "code files are written by dmcodec encode") from None
    header = _parse_header(path, arrays["header"])
    codes = arrays["codes"]
    if codes.shape[0] != header["n_q"]:
        raise DmcodecError(f"{path}: the header says {header['n_q']} codebooks but the codes hold {codes.shape[0]}")
    return EncodedAudio(codes.astype(np.int64), header["num_samples"], header["sample_rate"],
                        header["model_fingerprint"], header["dtype"])


def is_code_file(path: str | os.PathLike) -> bool:
    """True for a ``.npz`` code file that dmcodec wrote (so ``encode`` may replace it)."""
    try:
        load_encoded(path)
    except DmcodecError:
        return False
    return True


def _read_members(path: Path, archive: zipfile.ZipFile) -> dict[str, np.ndarray]:
    infos = {info.filename: info for info in archive.infolist()}
    if set(infos) != _MEMBERS:
        raise DmcodecError(f"{path}: a code file holds the arrays codes and header, this one "
                           f"{sorted(infos)[:4]}; not a dmcodec .npz code file")
    arrays, size = {}, path.stat().st_size
    for name, info in infos.items():
        if info.compress_type != zipfile.ZIP_STORED or info.file_size != info.compress_size:
            raise DmcodecError(f"{path}: {name} is compressed; dmcodec writes code files uncompressed")
        if info.file_size > size:
            raise DmcodecError(f"{path}: {name} claims {info.file_size:,} bytes, more than the file holds; the file "
                               "is truncated or damaged")
        with archive.open(info) as f:
            _read_header(f, info.file_size, path, codes=name == "codes.npy")
            f.seek(0)
            arrays[name[:-4]] = np.lib.format.read_array(f, allow_pickle=False)
    return arrays


def _parse_header(path: Path, array: np.ndarray) -> dict:
    """The JSON header: every field present, of its type and in a range that can be meant."""
    if array.shape != () or array.dtype.kind != "U" or array.nbytes > _MAX_HEADER_BYTES:
        raise DmcodecError(f"{path}: the header must be one JSON string, got {array.dtype} {list(array.shape)}")
    try:
        header = json.loads(str(array))
    except (ValueError, RecursionError):
        header = None
    if not isinstance(header, dict) or header.get("format") != NPZ_FORMAT:
        raise DmcodecError(f"{path}: not a dmcodec code file (its header has no format {NPZ_FORMAT!r})")

    def field(name: str, valid) -> object:
        value = header.get(name)
        if not valid(value):
            raise DmcodecError(f"{path}: header field {name} is missing or invalid ({value!r}); the file is "
                               "damaged or was not written by dmcodec")
        return value

    def integer(low: int, high: int):
        return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high

    field("format_version", integer(1, 1 << 31))
    version: int = header["format_version"]
    if version > NPZ_VERSION:
        raise DmcodecError(f"{path}: code file version {version} is newer than this dmcodec reads; upgrade dmcodec")
    field("model_fingerprint", lambda v: isinstance(v, str) and _FINGERPRINT.match(v))
    field("num_samples", integer(1, 1 << 48))
    field("sample_rate", integer(*RANGES["sample_rate"]))
    field("n_q", integer(*RANGES["n_q"]))
    field("dtype", lambda v: v in DTYPES)
    return header
