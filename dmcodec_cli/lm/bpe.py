"""Acoustic BPE over codes with ``codec-bpe``: frequent runs of codes merged into tokens, trained on a store.

codec-bpe writes codes [K, T] as text, one character per code (frame-major, codebook k's code c as the
character ``UNICODE_OFFSET + k * C + c``, exactly the ``flat`` layout), and trains a Hugging Face BPE
tokenizer on that text. A tokenizer folder holds the tokenizer's own JSON files and ``dmcodec-bpe.json``
(the codes it was trained on: model fingerprint, K, C, frame rate). A sequence is BOS, the BPE ids, EOS;
:meth:`BpeTokenizer.decode` is its exact inverse. Needs the ``bpe`` extra (codec-bpe).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..atomic import atomic_path
from ..corpus.store import CodeStore, StoreMeta
from ..errors import DmcodecError
from ..outputs import OVERWRITE_HINT, read_record, refuse_inputs, write_record

BPE_FORMAT = "dmcodec-bpe"
BPE_VERSION = 1
BPE_RECORD = "dmcodec-bpe.json"
SPECIAL_TOKENS = {"bos": "<s>", "eos": "</s>", "pad": "<pad>"}
#: what ``save_pretrained`` writes into a tokenizer folder (besides the record)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _codec_bpe():
    try:
        import codec_bpe
        from codec_bpe.core.trainer import Trainer
    except ImportError as exc:
        raise DmcodecError(f"acoustic BPE needs codec-bpe, which cannot be imported ({exc}); "
                           "pip install 'dmcodec[bpe]'") from None
    return codec_bpe, Trainer


class BpeTokenizer:
    """A trained tokenizer folder: codes [K, T] <-> int32 token ids [L] (BOS, BPE ids, EOS)."""

    layout = "bpe"
    ndim = 1

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        record = read_record(self.folder, BPE_RECORD, BPE_FORMAT)
        if record is None:
            raise DmcodecError(f"{self.folder}: no {BPE_RECORD}; not a tokenizer made by `dmcodec bpe`")
        if record.get("complete") is False:
            raise DmcodecError(f"{self.folder}: the training of this tokenizer did not finish; run `dmcodec bpe` "
                               "again")
        from transformers import PreTrainedTokenizerFast  # here: importing transformers takes seconds

        self._codec_bpe, _ = _codec_bpe()
        self.n_q, self.codebook_size, self.frame_rate, self.model_fingerprint = _record_fields(self.folder, record)
        try:
            self._tokenizer = PreTrainedTokenizerFast.from_pretrained(str(self.folder), local_files_only=True)
        except (KeyError, TypeError, ValueError, OSError) as exc:
            raise DmcodecError(f"{self.folder}: the tokenizer cannot be loaded ({exc}); train it again") from None
        self.bos, self.eos, self.pad = (self._tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS[k])
                                        for k in ("bos", "eos", "pad"))
        self.vocab_size = len(self._tokenizer)
        if not all(isinstance(i, int) for i in (self.bos, self.eos, self.pad)) or \
                self.vocab_size < self.n_q * self.codebook_size + len(SPECIAL_TOKENS):
            raise DmcodecError(f"{self.folder}: tokenizer.json does not hold the {self.n_q} x {self.codebook_size} "
                               f"codes and {', '.join(SPECIAL_TOKENS.values())} its {BPE_RECORD} describes; "
                               "train it again")

    def check_store(self, meta: StoreMeta, source: str) -> None:
        """Refuse a store whose codes the tokenizer was not trained on (another model, fewer codebooks)."""
        if meta.model_fingerprint != self.model_fingerprint or meta.codebook_size != self.codebook_size:
            raise DmcodecError(f"{source}: was made by another model than the codes {self.folder} was trained on; "
                               "train a tokenizer on this store (`dmcodec bpe`)")
        if meta.n_q < self.n_q:
            raise DmcodecError(f"{source}: holds {meta.n_q} codebooks, the tokenizer {self.folder} needs {self.n_q}")

    def encode(self, codes: np.ndarray) -> np.ndarray:
        """Codes [n_q >= K, T] -> int32 [L]: BOS, the BPE ids of the first K codebooks, EOS."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[0] < self.n_q:
            raise ValueError(f"codes must be [n_q >= {self.n_q}, T], got shape {list(codes.shape)}")
        text = self._codec_bpe.codes_to_chars(codes[:self.n_q].astype(np.int64), self.codebook_size)
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        return np.asarray([self.bos, *ids, self.eos], dtype=np.int32)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """The exact inverse of :meth:`encode` -> int64 codes [K, T]; ValueError for a sequence it cannot
        have made (no BOS / EOS, special or foreign tokens inside, a code out of its codebook's place)."""
        tokens = np.asarray(tokens).astype(np.int64)
        if tokens.ndim != 1 or len(tokens) < 2 or tokens[0] != self.bos or tokens[-1] != self.eos:
            raise ValueError("bpe: a sequence must be 1-D and start with BOS and end with EOS")
        body = tokens[1:-1]
        if body.size and (body.min() < 0 or body.max() >= self.vocab_size):
            raise ValueError(f"bpe: token ids must lie in 0..{self.vocab_size - 1}")
        chars = np.array([ord(c) for c in self._tokenizer.decode(body.tolist())], dtype=np.int64)
        if len(chars) % self.n_q:
            raise ValueError(f"bpe: the tokens hold {len(chars)} codes, not a whole number of {self.n_q}-code frames")
        step = np.arange(self.n_q, dtype=np.int64) * self.codebook_size
        codes = (chars.reshape(-1, self.n_q) - self._codec_bpe.UNICODE_OFFSET - step).T
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError("bpe: the tokens hold a special token or a code out of its codebook's place")
        return codes

    def digest(self) -> str:
        return hashlib.sha256((self.folder / "tokenizer.json").read_bytes()).hexdigest()

    def to_dict(self) -> dict:
        return {"format": BPE_FORMAT, "format_version": BPE_VERSION, "layout": "bpe", "n_q": self.n_q,
                "codebook_size": self.codebook_size, "frame_rate": self.frame_rate,
                "model_fingerprint": self.model_fingerprint, "tokenizer": str(self.folder.resolve()),
                "tokenizer_sha256": self.digest(), "vocab_size": self.vocab_size,
                "special_tokens": {"bos": self.bos, "eos": self.eos, "pad": self.pad}}


def _record_fields(folder: Path, record: dict) -> tuple[int, int, float, str]:
    """(n_q, codebook_size, frame_rate, model_fingerprint) of a tokenizer record, each checked."""
    n_q, size, rate, fingerprint = (record.get(k) for k in ("n_q", "codebook_size", "frame_rate",
                                                            "model_fingerprint"))
    if not (isinstance(n_q, int) and not isinstance(n_q, bool) and 1 <= n_q <= 64
            and isinstance(size, int) and not isinstance(size, bool) and 2 <= size <= 32768
            and isinstance(rate, (int, float)) and not isinstance(rate, bool) and math.isfinite(rate) and rate > 0
            and isinstance(fingerprint, str) and re.fullmatch(r"[0-9a-f]{64}", fingerprint)):
        found = ", ".join(f"{k} {record.get(k)!r}" for k in ("n_q", "codebook_size", "frame_rate"))
        raise DmcodecError(f"{folder / BPE_RECORD}: damaged ({found}, or a fingerprint that is not 64 hex digits); "
                           "train the tokenizer again")
    return n_q, size, float(rate), fingerprint


def _check_output(folder: Path, store_path: str | os.PathLike, overwrite: bool) -> None:
    refuse_inputs([folder / name for name in (*TOKENIZER_FILES, BPE_RECORD)], [store_path])
    if read_record(folder, BPE_RECORD, BPE_FORMAT) is None and folder.exists() and any(folder.iterdir()) \
            and not overwrite:
        raise DmcodecError(f"{folder}: is not empty and holds no tokenizer of `dmcodec bpe`; {OVERWRITE_HINT} -o")


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """The tokenizers library prints its progress on file descriptor 1; stdout is kept for --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def train_bpe(store_path: str | os.PathLike, output: str | os.PathLike, n_q: int | None = None, merges: int = 4096,
              chunk_seconds: int = 30, overwrite: bool = False) -> BpeTokenizer:
    """Train a tokenizer on the store's first ``n_q`` codebooks (default all) with ``merges`` learned tokens
    beyond the K * C codes and the 3 special tokens; written into ``output`` (a folder)."""
    _, Trainer = _codec_bpe()
    output = Path(output)
    if not 1 <= merges <= 1_000_000 or not 1 <= chunk_seconds <= 3600:
        raise DmcodecError(f"--merges must be 1..1000000 and --chunk-seconds 1..3600, got {merges} and {chunk_seconds}")
    _check_output(output, store_path, overwrite)
    with CodeStore(store_path) as store, tempfile.TemporaryDirectory(prefix="dmcodec-bpe-") as tmp:
        meta = store.meta
        if n_q is not None and not 1 <= n_q <= meta.n_q:
            raise DmcodecError(f"--n-q must be between 1 and {meta.n_q} (the codebooks in {store_path}), got {n_q}")
        if not store.total_frames:
            raise DmcodecError(f"{store_path}: holds no codes ({len(store)} utterances, 0 frames); a tokenizer needs "
                               "codes to learn from: encode some audio into the store first")
        k = n_q or meta.n_q
        codes_dir = Path(tmp) / "codes"
        codes_dir.mkdir()
        for i in range(len(store)):  # codec-bpe trains on a folder of .npy files (int32: it adds its offset in place)
            np.save(codes_dir / f"{i:09d}.npy", store[i][:k].astype(np.int32))
        trainer = Trainer(num_codebooks=k, codebook_size=meta.codebook_size, codec_framerate=meta.frame_rate,
                          chunk_size_secs=chunk_seconds, vocab_size=k * meta.codebook_size + 3 + merges,
                          bos_token=SPECIAL_TOKENS["bos"], eos_token=SPECIAL_TOKENS["eos"],
                          pad_token=SPECIAL_TOKENS["pad"])
        saved = Path(tmp) / "tokenizer"
        with _stdout_to_stderr():
            trainer.train(str(codes_dir)).save_pretrained(str(saved))
        record = {"format": BPE_FORMAT, "format_version": BPE_VERSION, "n_q": k, "codebook_size": meta.codebook_size,
                  "frame_rate": meta.frame_rate, "model_fingerprint": meta.model_fingerprint, "merges": merges,
                  "chunk_seconds": chunk_seconds, "store": str(store_path)}
        # the record first, marked incomplete: a run killed while the files are copied leaves a folder the next
        # run knows as its own (and that no export takes)
        write_record(output, BPE_RECORD, {**record, "complete": False})
        for name in sorted(os.listdir(saved)):
            refuse_inputs([output / name], [store_path])  # a name save_pretrained added since TOKENIZER_FILES
            with atomic_path(output / name) as target:
                shutil.copyfile(saved / name, target)
    write_record(output, BPE_RECORD, {**record, "complete": True})
    return BpeTokenizer(output)
