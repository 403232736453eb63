"""Token layouts: every layout's inverse gives the codes back exactly; special ids and metadata; bad sequences."""

from __future__ import annotations

import numpy as np
import pytest

from dmcodec_cli.lm.tokens import LAYOUTS, TokenSpec, from_tokens, to_tokens

FINGERPRINT = "a" * 64


def spec(layout: str, n_q: int, codebook_size: int = 16, offsets: bool | None = None) -> TokenSpec:
    return TokenSpec.for_codes(layout, n_q, codebook_size, 50.0, FINGERPRINT, offsets)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("offsets", [None, True, False])
def test_inverse_of_every_layout_over_lengths_and_codebooks(layout, offsets):
    rng = np.random.default_rng(0)
    for n_q in (1, 2, 3, 8):
        for frames in (0, 1, 2, 7, 50):
            s = spec(layout, n_q, 16, offsets)
            codes = rng.integers(0, 16, (n_q + 1, frames))  # one codebook more than kept
            tokens = to_tokens(codes, s)
            assert tokens.dtype == np.int32 and tokens.ndim == s.ndim
            assert tokens.shape[-1] == s.length(frames)
            np.testing.assert_array_equal(from_tokens(tokens, s), codes[:s.n_q])
            # codes and specials stay in the vocabulary; specials appear only where the layout puts them
            assert tokens.size == 0 or (0 <= tokens.min() and tokens.max() < s.vocab_size)


def test_flat_interleaves_frames_with_codebook_offsets():
    s = spec("flat", 2, 10)
    codes = np.array([[1, 2, 3], [4, 5, 6]])
    assert to_tokens(codes, s).tolist() == [20, 1, 14, 2, 15, 3, 16, 21]
    assert (s.code_vocab_size, s.bos, s.eos, s.pad, s.vocab_size) == (20, 20, 21, 22, 23)


def test_delay_is_the_musicgen_pattern():
    s = spec("delay", 3, 10)
    assert not s.codebook_offsets and (s.bos, s.eos, s.pad) == (10, 11, 12)
    tokens = to_tokens(np.array([[1, 2], [3, 4], [5, 6]]), s)
    assert tokens.tolist() == [[10, 1, 2, 12, 12, 11],
                               [10, 12, 3, 4, 12, 11],
                               [10, 12, 12, 5, 6, 11]]


def test_parallel_is_unchanged_and_first_is_codebook_zero():
    codes = np.array([[1, 2], [3, 4]])
    assert to_tokens(codes, spec("parallel", 2, 10)).tolist() == [[1, 2], [3, 4]]
    assert to_tokens(codes, spec("parallel", 2, 10, True)).tolist() == [[1, 2], [13, 14]]
    first = spec("first", 4, 10)
    assert first.n_q == 1 and to_tokens(codes, first).tolist() == [10, 1, 2, 11]


def test_metadata_round_trips_and_names_the_special_ids():
    s = spec("delay", 4, 1024)
    data = s.to_dict()
    assert data["special_tokens"] == {"bos": 1024, "eos": 1025, "pad": 1026} and data["vocab_size"] == 1027
    assert data["layout"] == "delay" and data["n_q"] == 4 and data["model_fingerprint"] == FINGERPRINT
    assert TokenSpec.from_dict(data) == s


@pytest.mark.parametrize("layout, tokens, why", [
    ("flat", [20, 1, 14, 2], "end with EOS"),
    ("flat", [20, 1, 14, 2, 21], "tokens"),  # 3 code tokens for K = 2
    ("flat", [20, 14, 1, 21], "not one of its codes"),  # codebooks swapped
    ("first", [10, 10, 11], "not one of its codes"),  # BOS inside
    ("delay", [[10, 1, 12, 11], [10, 3, 4, 11]], "PADs"),
    ("parallel", [[1, 2]], "expected"),
])
def test_inverse_refuses_what_no_layout_makes(layout, tokens, why):
    s = spec(layout, 2, 10)
    with pytest.raises(ValueError, match=why):
        from_tokens(np.array(tokens), s)


def test_bad_codes_and_specs_are_refused():
    with pytest.raises(ValueError, match="0..9"):
        to_tokens(np.array([[3, 10]]), spec("flat", 1, 10))
    with pytest.raises(ValueError, match="n_q >= 3"):
        to_tokens(np.zeros((2, 4), int), spec("flat", 3, 10))
    with pytest.raises(ValueError, match="layout must be one of"):
        spec("zigzag", 2)
