"""Looking into a code store: summary statistics and decoding back to audio."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import DmcodecError
from ..inference import decode_file
from ..model import DMCodec
from .progress import Quiet
from .store import CodeStore, model_fingerprint


def codebook_stats(store: CodeStore) -> list[dict]:
    """Per codebook: codes used (count and fraction of the codebook) and perplexity exp(entropy)."""
    size, n_q = store.meta.codebook_size, store.meta.n_q
    counts = np.zeros((n_q, size), dtype=np.int64)
    for block in store.iter_code_blocks():
        for k in range(n_q):
            counts[k] += np.bincount(block[:, k].astype(np.int64), minlength=size)[:size]
    stats = []
    for k in range(n_q):
        total = counts[k].sum()
        p = counts[k][counts[k] > 0] / max(total, 1)
        entropy = float(-(p * np.log(p)).sum()) if total else 0.0
        used = int((counts[k] > 0).sum())
        stats.append({"codebook": k, "used": used, "usage": used / size, "perplexity": math.exp(entropy)})
    return stats


def store_summary(path: str | os.PathLike) -> dict:
    """What ``dmcodec info corpus.h5`` shows."""
    with CodeStore(path) as store:
        meta = store.meta
        seconds = float(store.num_samples.sum()) / meta.sample_rate
        return {"store": str(path), "utterances": len(store), "hours": seconds / 3600, "frames": store.total_frames,
                "sample_rate": meta.sample_rate, "frame_rate": meta.frame_rate, "n_q": meta.n_q,
                "codebook_size": meta.codebook_size, "model_fingerprint": meta.model_fingerprint,
                "codebooks": codebook_stats(store)}


def decode_store(model: DMCodec, path: str | os.PathLike, outdir: str | os.PathLike, ids: list[str] | None = None,
                 extension: str = ".wav", progress: Quiet = Quiet()) -> list[Path]:
    """Write ``outdir/<id><extension>`` for the listed ids (default: all), trimmed to ``num_samples``."""
    outdir = Path(outdir)
    written = []
    with CodeStore(path) as store:
        if store.meta.model_fingerprint != model_fingerprint(model):
            raise DmcodecError(f"{path}: was made by model {store.meta.model_fingerprint[:16]}, not the given one "
                               f"({model_fingerprint(model)[:16]}); pass the model that made it with --model")
        missing = [name for name in ids or [] if name not in store]
        if missing:
            raise DmcodecError(f"{path}: no utterance {missing[0]!r} ({len(missing)} ids not found); "
                               "see `dmcodec info` for what the store holds")
        chosen = ids or store.ids
        progress.start(len(chosen), "decode")
        try:
            for name in chosen:
                i = store.index(name)
                target = outdir / f"{name}{extension}"
                decode_file(model, store[i], target, int(store.num_samples[i]))  # window by window
                written.append(target)
                progress.advance(1, int(store.num_samples[i]) / model.sample_rate)
        finally:
            progress.stop()
    return written
