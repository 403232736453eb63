"""Token layouts: the codes [n_q, T] of one utterance <-> the token sequence a speech LM trains on.

With K codebooks of C codes each (C = codebook_size):

- ``flat``: int32 [K * T + 2]: BOS, frame 0's K codes, frame 1's K codes, ..., EOS.
- ``delay`` (MusicGen): int32 [K, T + K + 1]: a BOS column, then row k holds k PADs, codebook k's T codes
  and K - 1 - k PADs; an EOS column last. Column j + 1 thus holds codebook k's code of frame j - k.
- ``parallel``: int32 [K, T]: the codes unchanged (no special tokens in the sequence).
- ``first``: int32 [T + 2]: BOS, codebook 0's codes (the stream DM-Codec distils its teachers into), EOS.

With codebook offsets (the default of ``flat`` only) codebook k's code c is the token k * C + c, so
the code vocabulary is K * C tokens; without them it is C. BOS, EOS and PAD come right after the code
vocabulary. Every layout has an exact inverse (:func:`from_tokens`) that checks what it is given.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

TOKENS_FORMAT = "dmcodec-tokens"
TOKENS_VERSION = 1
TOKEN_DTYPE = np.int32


@dataclass(frozen=True)
class TokenSpec:
    """Everything needed to read a token sequence back into codes, saved with every export."""

    layout: str
    n_q: int  #: K, codebooks in the sequence (1 for ``first``)
    codebook_size: int  #: C
    codebook_offsets: bool  #: codebook k's code c is k * C + c
    frame_rate: float  #: code frames per second
    model_fingerprint: str  #: sha256 of the weights that made the codes (decode with that model)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.layout == "first" and self.n_q != 1:
            raise ValueError(f"layout 'first' holds codebook 0 alone, so n_q must be 1, got {self.n_q}")
        if self.n_q < 1 or self.codebook_size < 2:
            raise ValueError(f"n_q must be >= 1 and codebook_size >= 2, got {self.n_q} and {self.codebook_size}")

    @classmethod
    def for_codes(cls, layout: str, n_q: int, codebook_size: int, frame_rate: float, model_fingerprint: str,
                  codebook_offsets: bool | None = None) -> "TokenSpec":
        """The spec of ``layout`` over the first ``n_q`` codebooks (``first``: codebook 0); offsets default
        to the layout's own default (on for ``flat`` only)."""
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        offsets = LAYOUTS[layout].offsets_by_default if codebook_offsets is None else codebook_offsets
        return cls(layout, 1 if layout == "first" else n_q, codebook_size, offsets, float(frame_rate),
                   model_fingerprint)

    @classmethod
    def for_store(cls, meta, layout: str, n_q: int | None = None,
                  codebook_offsets: bool | None = None) -> "TokenSpec":
        """The spec of ``layout`` over the first ``n_q`` (default: all) codebooks of a store (its ``StoreMeta``)."""
        if n_q is not None and not 1 <= n_q <= meta.n_q:
            raise ValueError(f"n_q must be between 1 and {meta.n_q} (the codebooks in the store), got {n_q}")
        return cls.for_codes(layout, n_q or meta.n_q, meta.codebook_size, meta.frame_rate, meta.model_fingerprint,
                             codebook_offsets)

    @property
    def code_vocab_size(self) -> int:
        return self.n_q * self.codebook_size if self.codebook_offsets else self.codebook_size

    @property
    def bos(self) -> int:
        return self.code_vocab_size

    @property
    def eos(self) -> int:
        return self.code_vocab_size + 1

    @property
    def pad(self) -> int:
        return self.code_vocab_size + 2

    @property
    def vocab_size(self) -> int:
        """Code vocabulary + BOS, EOS, PAD: the embedding size of an LM over these tokens."""
        return self.code_vocab_size + 3

    @property
    def ndim(self) -> int:
        """1 for a single stream (``flat``, ``first``), 2 for [K, L] (``delay``, ``parallel``)."""
        return LAYOUTS[self.layout].ndim

    def length(self, num_frames: int) -> int:
        """Tokens along the sequence axis for an utterance of ``num_frames`` frames."""
        return LAYOUTS[self.layout].length(num_frames, self.n_q)

    def encode(self, codes: np.ndarray) -> np.ndarray:
        """:func:`to_tokens` with this spec."""
        return to_tokens(codes, self)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """:func:`from_tokens` with this spec."""
        return from_tokens(tokens, self)

    def to_dict(self) -> dict:
        """The spec, its special ids and vocabulary, as JSON-ready metadata."""
        return {"format": TOKENS_FORMAT, "format_version": TOKENS_VERSION, **asdict(self),
                "code_vocab_size": self.code_vocab_size, "vocab_size": self.vocab_size,
                "special_tokens": {"bos": self.bos, "eos": self.eos, "pad": self.pad}}

    @classmethod
    def from_dict(cls, data: object) -> "TokenSpec":
        if not isinstance(data, dict) or data.get("format") != TOKENS_FORMAT:
            raise ValueError(f"not {TOKENS_FORMAT!r} metadata")
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def _offsets(spec: TokenSpec) -> np.ndarray:
    """int64 [K, 1]: what codebook k's codes are shifted by."""
    step = spec.codebook_size if spec.codebook_offsets else 0
    return (np.arange(spec.n_q, dtype=np.int64) * step)[:, None]


def _checked_codes(tokens: np.ndarray, spec: TokenSpec, where: str) -> np.ndarray:
    """Tokens [K, T] of the code part -> codes [K, T], refusing any token that is not a code of its row."""
    codes = tokens.astype(np.int64) - _offsets(spec)
    bad = (codes < 0) | (codes >= spec.codebook_size)
    if bad.any():
        k, t = map(int, np.argwhere(bad)[0])
        raise ValueError(f"{where}: token {int(tokens[k, t])} of codebook {k} at frame {t} is not one of its codes")
    return codes


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise ValueError(what)


def _flat(x: np.ndarray, spec: TokenSpec) -> np.ndarray:
    return np.concatenate([[spec.bos], x.T.reshape(-1), [spec.eos]])


def _unflat(tokens: np.ndarray, spec: TokenSpec) -> np.ndarray:
    _check(tokens.ndim == 1 and len(tokens) >= 2 and (len(tokens) - 2) % spec.n_q == 0,
           f"{spec.layout}: expected [{spec.n_q} * T + 2] tokens, got shape {list(tokens.shape)}")
    _check(tokens[0] == spec.bos and tokens[-1] == spec.eos, f"{spec.layout}: must start with BOS and end with EOS")
    return tokens[1:-1].reshape(-1, spec.n_q).T


def _delay(x: np.ndarray, spec: TokenSpec) -> np.ndarray:
    k_count, frames = x.shape
    out = np.full((k_count, frames + k_count + 1), spec.pad, dtype=np.int64)
    out[:, 0], out[:, -1] = spec.bos, spec.eos
    for k in range(k_count):
        out[k, 1 + k:1 + k + frames] = x[k]
    return out


def _undelay(tokens: np.ndarray, spec: TokenSpec) -> np.ndarray:
    k_count = spec.n_q
    _check(tokens.ndim == 2 and tokens.shape[0] == k_count and tokens.shape[1] >= k_count + 1,
           f"delay: expected [{k_count}, T + {k_count + 1}] tokens, got shape {list(tokens.shape)}")
    _check((tokens[:, 0] == spec.bos).all() and (tokens[:, -1] == spec.eos).all(),
           "delay: the first column must be BOS and the last EOS")
    body = tokens[:, 1:-1]
    frames = body.shape[1] - (k_count - 1)
    for k in range(k_count):
        pads = np.concatenate([body[k, :k], body[k, k + frames:]])
        _check((pads == spec.pad).all(), f"delay: codebook {k} must have {k} PADs before its codes and "
                                         f"{k_count - 1 - k} after")
    return np.stack([body[k, k:k + frames] for k in range(k_count)])


def _unparallel(tokens: np.ndarray, spec: TokenSpec) -> np.ndarray:
    _check(tokens.ndim == 2 and tokens.shape[0] == spec.n_q,
           f"parallel: expected [{spec.n_q}, T] tokens, got shape {list(tokens.shape)}")
    return tokens


@dataclass(frozen=True)
class Layout:
    """One layout: codes (offset) [K, T] -> tokens and back to the code part [K, T]."""

    arrange: Callable[[np.ndarray, TokenSpec], np.ndarray]
    unarrange: Callable[[np.ndarray, TokenSpec], np.ndarray]
    length: Callable[[int, int], int]  #: (num_frames, K) -> tokens along the sequence axis
    ndim: int
    offsets_by_default: bool = False


LAYOUTS: dict[str, Layout] = {
    "flat": Layout(_flat, _unflat, lambda t, k: k * t + 2, 1, offsets_by_default=True),
    "delay": Layout(_delay, _undelay, lambda t, k: t + k + 1, 2),
    "parallel": Layout(lambda x, spec: x, _unparallel, lambda t, k: t, 2),
    "first": Layout(_flat, _unflat, lambda t, k: t + 2, 1),
}


def to_tokens(codes: np.ndarray, spec: TokenSpec) -> np.ndarray:
    """Codes [n_q, T] (n_q >= spec.n_q; the first spec.n_q are used) -> int32 tokens of ``spec.layout``."""
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[0] < spec.n_q:
        raise ValueError(f"codes must be [n_q >= {spec.n_q}, T], got shape {list(codes.shape)}")
    x = codes[:spec.n_q].astype(np.int64)
    if x.size and (x.min() < 0 or x.max() >= spec.codebook_size):
        raise ValueError(f"codes must lie in 0..{spec.codebook_size - 1}, got {x.min()}..{x.max()}")
    return LAYOUTS[spec.layout].arrange(x + _offsets(spec), spec).astype(TOKEN_DTYPE)


def from_tokens(tokens: np.ndarray, spec: TokenSpec) -> np.ndarray:
    """The exact inverse of :func:`to_tokens`: tokens -> int64 codes [spec.n_q, T]; ValueError for a sequence
    that ``to_tokens`` cannot have made (wrong shape, misplaced special tokens, a code out of its codebook)."""
    tokens = np.asarray(tokens)
    if tokens.dtype.kind not in "iu" and tokens.size:  # an empty list read from JSON is float64
        raise ValueError(f"tokens must be integers, got {tokens.dtype}")
    tokens = tokens.astype(np.int64)
    return _checked_codes(LAYOUTS[spec.layout].unarrange(tokens, spec), spec, spec.layout)
