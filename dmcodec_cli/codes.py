"""Code files: ``.npy`` arrays of int16 codes [n_q, frames], checked against the model before decoding."""

from __future__ import annotations

import math
import os
import tokenize
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .config import CodecConfig
from .errors import DmcodecError


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


def save_codes(path: str | os.PathLike, codes: np.ndarray) -> None:
    """Write codes [n_q, frames] as int16 ``.npy``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, np.asarray(codes, dtype=np.int16))


def _read_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from a ``.npy`` header, checked against the file size before anything is allocated."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                raise ValueError(f".npy version {version[0]}.{version[1]} is not supported")
            shape, _fortran, dtype = readers[version](f)
        except (ValueError, EOFError, SyntaxError, TypeError, RecursionError, tokenize.TokenError) as exc:
            raise DmcodecError(f"{path}: not a readable .npy code file ({str(exc).splitlines()[0]}); "
                               "code files are written by dmcodec encode") from None
        data_start = f.tell()
    if dtype.hasobject:
        raise DmcodecError(f"{path}: refused: the array holds Python objects (pickled data, which could run code); "
                           "code files hold integer codes only")
    if not np.issubdtype(dtype, np.integer):
        raise DmcodecError(f"{path}: codes must be integers, the file holds {dtype}")
    if len(shape) != 2:
        raise DmcodecError(f"{path}: codes must have shape [n_q, frames], the file holds {list(shape)}")
    expected = math.prod(shape) * dtype.itemsize
    actual = path.stat().st_size - data_start
    if expected != actual:
        raise DmcodecError(f"{path}: the header claims {list(shape)} {dtype} ({expected:,} bytes) but the file holds "
                           f"{actual:,} bytes of data; the file is truncated or damaged")
    return shape, dtype


def load_codes(path: str | os.PathLike, config: CodecConfig) -> np.ndarray:
    """Read and validate a ``.npy`` code file -> int64 [n_q, frames]. Never unpickles.

    The header is checked first (integer dtype, 2 dimensions, data size == file size), so a header that
    claims an absurd shape is refused before any allocation."""
    path = Path(path)
    if not path.is_file():
        raise DmcodecError(f"{path}: no such file")
    try:
        _read_header(path)
        codes = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise DmcodecError(f"{path}: cannot read the code file ({exc.strerror or exc})") from None
    except (ValueError, EOFError) as exc:
        raise DmcodecError(f"{path}: not a readable .npy code file ({str(exc).splitlines()[0]})") from None
    return check_codes(codes, config, str(path))
