"""CodeDataset: random access by index and id in every layout, lengths, padding, and the same items under
DataLoader workers as without; the docs' tiny-LM example runs as written."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dmcodec_cli.corpus.store import CodeStore, Entry, StoreMeta, write_store
from dmcodec_cli.lm.dataset import CodeDataset
from dmcodec_cli.lm.tokens import from_tokens

DOCS = Path(__file__).resolve().parents[1] / "docs" / "export.md"
META = StoreMeta(16000, 50.0, 4, 32, "d" * 64, json.dumps({"n_q": 4}))


def make_store(path, count: int = 12, seed: int = 2) -> Path:
    rng = np.random.default_rng(seed)
    entries = []
    for i in range(count):
        frames = int(rng.integers(0, 40)) if i else 1
        entries.append(Entry(f"spk{i % 3}/utt.{i}", frames * 320, rng.integers(0, 32, (4, frames))))
    return write_store(path, META, entries)


@pytest.mark.parametrize("layout", ["flat", "delay", "parallel", "first"])
def test_items_by_index_and_id_are_the_store_s_codes(tmp_path, layout):
    path = make_store(tmp_path / "c.h5")
    data = CodeDataset(path, layout, n_q=3)
    with CodeStore(path) as store:
        assert len(data) == len(store) and data.ids == store.ids
        for i, name in enumerate(store.ids):
            item = data[i]
            assert item["id"] == name and item["tokens"].dtype == torch.int64
            assert item["tokens"].shape[-1] == data.lengths[i] and item["num_frames"] == store[i].shape[1]
            np.testing.assert_array_equal(from_tokens(item["tokens"].numpy(), data.spec), store[i][:data.spec.n_q])
            assert torch.equal(data[name]["tokens"], item["tokens"])
    with pytest.raises(KeyError):
        data["nope"]
    with pytest.raises(IndexError):
        data[len(data)]


def test_collate_pads_with_pad_and_keeps_lengths(tmp_path):
    data = CodeDataset(make_store(tmp_path / "c.h5"), "delay")
    batch = data.collate([data[1], data[2], data[0]])
    assert batch["tokens"].shape == (3, 4, int(batch["lengths"].max()))
    for row, length, i in zip(batch["tokens"], batch["lengths"], [1, 2, 0]):
        assert torch.equal(row[:, :length], data[i]["tokens"]) and (row[:, length:] == data.spec.pad).all()


def test_two_workers_give_the_same_items_as_none(tmp_path):
    data = CodeDataset(make_store(tmp_path / "c.h5", count=40), "flat")
    data[0]  # the parent's handle is open: a forked worker must not read through it

    def collate(items: list[dict]) -> dict:  # runs in the worker: which process read, through whose handle
        return {**data.collate(items), "reader": os.getpid(), "opened_by": data._pid}

    def batches(workers: int) -> list[dict]:
        return list(DataLoader(data, batch_size=3, num_workers=workers, collate_fn=collate))

    alone, together = batches(0), batches(2)
    assert len(alone) == len(together) == 14
    assert {b["reader"] for b in alone} == {os.getpid()}
    readers = {b["reader"] for b in together}
    assert len(readers) == 2 and os.getpid() not in readers
    assert all(b["opened_by"] == b["reader"] for b in together)  # each worker opened the store itself
    for a, b in zip(alone, together):
        assert a["ids"] == b["ids"] and torch.equal(a["tokens"], b["tokens"]) and torch.equal(a["lengths"],
                                                                                             b["lengths"])


def test_the_docs_tiny_lm_example_runs_as_written(tmp_path, monkeypatch, one_thread):
    (code,) = re.findall(r"```python\n(# train a tiny LM.*?)```", DOCS.read_text(), re.S)
    make_store(tmp_path / "corpus.h5", count=160)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, str(DOCS), "exec"), scope)
    losses = scope["losses"]
    assert len(losses) == 20 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # it learns
    assert os.path.exists(tmp_path / "corpus.h5")
