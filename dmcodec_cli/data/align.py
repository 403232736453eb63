"""Alignment of teacher features to the codec's frames (50 Hz, frames = ceil(samples / 320)).

LM token features, two rules:

* ``pad`` (the paper): the token sequence ([CLS] text [SEP] [PAD]...) is padded / truncated to the frame count
  by the tokenizer and the LM's output at position i is frame i. Frames beyond the LM window get zeros.
* ``ctc`` (ours): word timings from a CTC model. Word w spoken on frames [s, e) with m tokens: token k covers
  the fraction [k/m, (k+1)/m) of the span and each frame takes the mean of the tokens that overlap it (one token
  per frame when the word has at least as many frames as tokens). Frames outside every word (silence, and all
  frames when nothing was recognised) are zero vectors; special tokens ([CLS], [SEP]) are not placed.

Word timings come from the greedy CTC path (recognised text) or from a Viterbi forced alignment of a known
text to the CTC log-probabilities (falling back to spreading the words evenly when the text cannot fit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

ALIGNMENTS = ("pad", "ctc")


@dataclass(frozen=True)
class WordSpan:
    """A word and the frames [start, end) on which it is spoken."""

    word: str
    start: int
    end: int


def greedy_word_spans(frame_ids: Sequence[int], blank_id: int, delimiter_id: int | None,
                      id_to_token: Mapping[int, str]) -> list[WordSpan]:
    """Words and their frames from a greedy CTC path (argmax id per frame).

    CTC collapse: a run of one id is one token, blanks separate runs; the delimiter token ends a word. A word
    spans from the first frame of its first token to the last frame of its last token.
    """
    words: list[WordSpan] = []
    chars: list[str] = []
    start, end, previous = 0, 0, None
    for frame, token in enumerate(frame_ids):
        token = int(token)
        if token == blank_id or token == delimiter_id:
            if token == delimiter_id and chars:
                words.append(WordSpan("".join(chars), start, end))
                chars = []
        elif token == previous:
            end = frame + 1
        else:
            if not chars:
                start = frame
            chars.append(id_to_token.get(token, ""))
            end = frame + 1
        previous = token
    if chars:
        words.append(WordSpan("".join(chars), start, end))
    return words


def forced_word_spans(log_probs: np.ndarray, word_tokens: Sequence[Sequence[int]], blank_id: int,
                      delimiter_id: int | None) -> list[tuple[int, int] | None]:
    """Viterbi CTC alignment of known words to log-probabilities [T, V]; frames [start, end) per word.

    Words are joined by the delimiter token (when the vocabulary has one). A word without tokens gets None.
    Returns None for every word when the tokens cannot fit in T frames.
    """
    targets: list[int] = []
    owner: list[int] = []  #: the word index of each target, -1 for a delimiter
    for index, tokens in enumerate(word_tokens):
        if not tokens:
            continue
        if targets and delimiter_id is not None:
            targets.append(delimiter_id)
            owner.append(-1)
        targets += list(tokens)
        owner += [index] * len(tokens)
    spans: list[tuple[int, int] | None] = [None] * len(word_tokens)
    path = _viterbi(log_probs, targets, blank_id) if targets else None
    if path is None:
        return spans
    for frame, position in enumerate(path):
        word = owner[position] if position >= 0 else -1
        if word >= 0:
            start, _ = spans[word] or (frame, frame)
            spans[word] = (start, frame + 1)
    return spans


def _viterbi(log_probs: np.ndarray, targets: list[int], blank_id: int) -> list[int] | None:
    """Best CTC path: for each frame, the index in ``targets`` it emits, or -1 for a blank. None if impossible."""
    frames, states = log_probs.shape[0], 2 * len(targets) + 1
    labels = np.full(states, blank_id)
    labels[1::2] = targets
    # a state may skip the blank before it when its label differs from the label two states back
    skip = np.zeros(states, dtype=bool)
    skip[3::2] = labels[3::2] != labels[1:-2:2]
    score = np.full(states, -np.inf)
    score[:2] = log_probs[0, labels[:2]]
    back = np.zeros((frames, states), dtype=np.int8)
    for t in range(1, frames):
        stay, step = score, np.concatenate([[-np.inf], score[:-1]])
        jump = np.where(skip, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        choices = np.stack([stay, step, jump])
        back[t] = choices.argmax(axis=0)
        score = choices.max(axis=0) + log_probs[t, labels]
    end = states - 1 if score[-1] >= score[-2] else states - 2
    if not np.isfinite(score[end]):
        return None
    path = []
    for t in range(frames - 1, -1, -1):
        path.append((end - 1) // 2 if end % 2 else -1)
        end -= back[t, end]
    return path[::-1]


def even_word_spans(num_words: int, frames: int) -> list[tuple[int, int]]:
    """Fallback timings: the frames shared evenly among the words, in order."""
    edges = [round(i * frames / num_words) for i in range(num_words + 1)] if num_words else [0]
    return [(edges[i], max(edges[i + 1], edges[i] + 1)) for i in range(num_words)]


def rescale_span(span: tuple[int, int], source_frames: int, frames: int) -> tuple[int, int]:
    """Frames of a CTC model -> codec frames (identity when both count the same frames)."""
    if source_frames == frames:
        return span
    start = min(frames - 1, span[0] * frames // source_frames)
    return start, max(start + 1, min(frames, -(-span[1] * frames // source_frames)))


def align_pad(token_features: np.ndarray, frames: int) -> np.ndarray:
    """[N, D] -> [frames, D]: truncated, or zero-padded beyond N (the LM window)."""
    out = np.zeros((frames, token_features.shape[1]), dtype=token_features.dtype)
    count = min(frames, len(token_features))
    out[:count] = token_features[:count]
    return out


def align_ctc(token_features: np.ndarray, token_word: np.ndarray | Sequence[int],
              spans: Sequence[tuple[int, int] | None], frames: int) -> np.ndarray:
    """Place token features [N, D] on the frames of their word (see the module docstring) -> [frames, D].

    ``token_word[k]`` is the word index of token k, -1 for special tokens; ``spans[w]`` the frames of word w
    (None: not placed).
    """
    out = np.zeros((frames, token_features.shape[1]), dtype=np.float32)
    words_of_tokens = np.asarray(token_word)
    for word, span in enumerate(spans):
        tokens = np.flatnonzero(words_of_tokens == word)
        if span is None or len(tokens) == 0:
            continue
        start, end = max(0, span[0]), min(frames, span[1])
        length, count = span[1] - span[0], len(tokens)
        for frame in range(start, end):
            j = frame - span[0]
            covering = [tokens[k] for k in range(count)
                        if k * length < (j + 1) * count and (k + 1) * length > j * count]
            out[frame] = token_features[covering].mean(axis=0)
    return out
