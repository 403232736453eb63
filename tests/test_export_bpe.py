"""Acoustic BPE (codec-bpe): a tokenizer trained on a store compresses repeated code runs, decodes every sequence
back to the codes exactly, refuses sequences it cannot have made, and exports read back equal the store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cli import run_cli
from dmcodec_cli.corpus.store import CodeStore, Entry, StoreMeta, write_store
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.lm.bpe import BpeTokenizer
from dmcodec_cli.lm.export import export_store, read_export_spec

pytest.importorskip("codec_bpe")

META = StoreMeta(16000, 50.0, 3, 16, "b" * 64, json.dumps({"n_q": 3}))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Utterances built from a few recurring 4-frame motifs (so BPE has runs to merge), plus 0 and 1 frame."""
    rng = np.random.default_rng(3)
    motifs = rng.integers(0, 16, (5, 3, 4))
    entries = [Entry("empty", 0, np.zeros((3, 0), int)), Entry("one", 320, rng.integers(0, 16, (3, 1)))]
    for i in range(30):
        codes = np.concatenate([motifs[j] for j in rng.integers(0, 5, 12)], axis=1)
        codes[:, rng.integers(0, codes.shape[1])] = rng.integers(0, 16, 3)  # and some noise
        entries.append(Entry(f"utt/{i}.x", codes.shape[1] * 320, codes))
    return write_store(tmp_path_factory.mktemp("bpe") / "codes.h5", META, entries)


@pytest.fixture(scope="module")
def tokenizer(store, tmp_path_factory):
    from dmcodec_cli.lm.bpe import train_bpe

    return train_bpe(store, tmp_path_factory.mktemp("tok") / "bpe", n_q=2, merges=64)


def test_bpe_sequences_decode_to_the_codes_exactly_and_are_shorter(store, tokenizer):
    assert (tokenizer.n_q, tokenizer.vocab_size) == (2, 2 * 16 + 3 + 64)
    total_codes = total_tokens = 0
    with CodeStore(store) as s:
        for name, codes in s:
            tokens = tokenizer.encode(codes)
            assert tokens[0] == tokenizer.bos and tokens[-1] == tokenizer.eos
            np.testing.assert_array_equal(tokenizer.decode(tokens), codes[:2])
            total_codes, total_tokens = total_codes + codes[:2].size, total_tokens + len(tokens) - 2
    assert total_tokens < 0.5 * total_codes  # the motifs were merged


def test_bpe_decode_refuses_what_encode_cannot_make(tokenizer):
    good = tokenizer.encode(np.array([[1, 2], [3, 4]]))
    for bad in [good[1:], good[:-1], np.insert(good, 1, tokenizer.pad), np.insert(good, 1, tokenizer.vocab_size)]:
        with pytest.raises(ValueError, match="bpe"):
            tokenizer.decode(bad)


def test_a_bpe_export_reads_back_equal_to_the_store(store, tokenizer, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "export", store, "-o", out, "--format", "jsonl", "--layout", "bpe",
                                "--bpe", tokenizer.folder, "--json")
    assert code == 0, err
    spec = read_export_spec(out)
    assert isinstance(spec, BpeTokenizer) and spec.to_dict()["tokenizer"] == str(tokenizer.folder.resolve())
    rows = {json.loads(line)["id"]: json.loads(line) for p in out.glob("tokens-*") for line in p.open()}
    with CodeStore(store) as s:
        assert sorted(rows) == sorted(s.ids)
        for name, codes in s:
            np.testing.assert_array_equal(spec.decode(rows[name]["tokens"]), codes[:2])
    with pytest.raises(DmcodecError, match="--layout bpe goes with --bpe"):
        export_store(store, tmp_path / "o2", "jsonl", "bpe")


def test_bpe_cli_trains_and_refuses_another_model_s_store(store, tmp_path, capsys):
    code, stdout, err = run_cli(capsys, "bpe", store, "-o", tmp_path / "tok", "--merges", "8", "--json")
    assert code == 0, err
    assert json.loads(stdout)["vocab_size"] == 3 * 16 + 3 + 8
    other = write_store(tmp_path / "other.h5", StoreMeta(16000, 50.0, 3, 16, "c" * 64, json.dumps({"n_q": 3})),
                        [Entry("a", 320, np.zeros((3, 1), int))])
    code, _, err = run_cli(capsys, "export", other, "-o", tmp_path / "x", "--layout", "bpe", "--bpe", tmp_path / "tok")
    assert code == 2 and "another model" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f.txt").write_text("x")
    code, _, err = run_cli(capsys, "bpe", store, "-o", tmp_path / "busy")
    assert code == 2 and "holds no tokenizer" in err
