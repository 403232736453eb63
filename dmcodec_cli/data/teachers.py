"""The teacher models of distillation, as a registry of kinds (never parsed out of strings).

* ``sm``  speech feature model (HuBERT, wav2vec2, WavLM, ...): hidden states at 50 Hz.
* ``stt`` CTC speech-to-text model + processor (wav2vec2-CTC): transcripts and word timings.
* ``lm``  text encoder (BERT, ELECTRA, any encoder with a fast tokenizer): hidden states per token.

Each loads from a Hugging Face id or a local folder. Layer choice: ``avg`` (mean of all hidden states, the
embedding output included, the paper's default), ``last`` or an index into the hidden states (0 = embeddings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence, Union

import numpy as np
import torch

from ..config import OFFICIAL
from ..errors import DmcodecError
from .align import WordSpan, forced_word_spans, greedy_word_spans

Layer = Union[str, int]
HOP = OFFICIAL.hop_length  #: codec samples per frame at 16 kHz
SAMPLE_RATE = OFFICIAL.sample_rate


def parse_layer(value: str | int) -> Layer:
    """"avg" | "last" | a non-negative integer (given as text or int)."""
    if isinstance(value, int) or str(value).strip().isdigit():
        return int(value)
    if value in ("avg", "last"):
        return value
    raise DmcodecError(f"layer must be 'avg', 'last' or a layer index (0 = embeddings), got {value!r}")


def select_layer(hidden_states: Sequence[torch.Tensor], layer: Layer) -> torch.Tensor:
    """[B, T, D] from the hidden states (embedding output first): their mean, the last, or one index."""
    if layer == "avg":
        return torch.stack(tuple(hidden_states)).mean(dim=0)
    if layer == "last":
        return hidden_states[-1]
    if isinstance(layer, str) or not 0 <= layer < len(hidden_states):
        raise DmcodecError(f"layer {layer} does not exist: the model has hidden states 0..{len(hidden_states) - 1}")
    return hidden_states[layer]


def _from_pretrained(loader: Callable, spec: str, what: str):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # ours is the only progress bar
    try:
        return loader(spec)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DmcodecError(f"{spec}: cannot load the {what} ({reason}); give a local model folder or a "
                           "Hugging Face id (downloading needs a network)") from None


# -- audio front end shared by the speech teachers ----------------------------------------------------------------

def conv_geometry(config) -> tuple[int, int]:
    """(stride, receptive field) in samples of a wav2vec2-style convolutional feature encoder."""
    strides, kernels = list(config.conv_stride), list(config.conv_kernel)
    receptive, jump = 1, 1
    for kernel, stride in zip(kernels, strides, strict=True):
        receptive += (kernel - 1) * jump
        jump *= stride
    return jump, receptive


def frame_input(audio: torch.Tensor, frames: int, stride: int, receptive: int, normalize: bool) -> torch.Tensor:
    """[B, L] -> [B, (n - 1) * stride + receptive], n = ceil(L / stride): normalised (per signal, when the model
    expects it) then zero-padded at the end so that model frame i starts at sample i * stride."""
    if normalize:
        variance = audio.var(dim=1, keepdim=True, unbiased=False)
        audio = (audio - audio.mean(dim=1, keepdim=True)) / torch.sqrt(variance + 1e-7)
    n = math.ceil(audio.shape[1] / stride)
    return torch.nn.functional.pad(audio, (0, (n - 1) * stride + receptive - audio.shape[1]))


def to_frames(features: torch.Tensor, frames: int) -> torch.Tensor:
    """[B, n, D] -> [B, frames, D]: unchanged when n == frames (50 Hz models), else linear interpolation."""
    if features.shape[1] == frames:
        return features
    return torch.nn.functional.interpolate(features.transpose(1, 2), size=frames, mode="linear",
                                           align_corners=False).transpose(1, 2)


def _speech_config_check(model, spec: str, what: str) -> None:
    if not hasattr(model.config, "conv_stride"):
        raise DmcodecError(f"{spec}: a {type(model).__name__} is not a {what} (no convolutional audio front end); "
                           "give a HuBERT / wav2vec2 / WavLM model")


def _wants_normalize(spec: str) -> bool:
    from transformers import AutoFeatureExtractor

    try:
        return bool(getattr(AutoFeatureExtractor.from_pretrained(spec), "do_normalize", False))
    except (OSError, ValueError, KeyError):
        return False


class SpeechFeatureTeacher:
    """``sm``: hidden states of a speech model at the codec frame rate.

    Alignment rule: the audio is zero-padded at the end to (frames - 1) * 320 + receptive field (400 samples
    for HuBERT / wav2vec2), so the 50 Hz model gives exactly ``frames`` = ceil(samples / 320) frames and its
    frame i starts at sample 320 i like codec frame i. A model with another stride is interpolated linearly.
    """

    kind = "sm"

    def __init__(self, model, spec: str, normalize: bool):
        self.model, self.spec, self.normalize = model.eval(), spec, normalize
        self.stride, self.receptive = conv_geometry(model.config)
        self.dim = int(model.config.hidden_size)

    @property
    def alignment(self) -> str:
        return "audio-pad" if self.stride == HOP else "audio-pad+interpolate"

    @classmethod
    def load(cls, spec: str, device: torch.device) -> "SpeechFeatureTeacher":
        from transformers import AutoModel

        model = _from_pretrained(AutoModel.from_pretrained, spec, "speech feature model (--sm)")
        _speech_config_check(model, spec, "speech feature model")
        return cls(model.to(device), spec, _wants_normalize(spec))

    @torch.inference_mode()
    def features(self, audio: torch.Tensor, frames: int, layer: Layer) -> torch.Tensor:
        """Audio [B, L] at 16 kHz (equal lengths: no padding mask is needed) -> features [B, frames, D]."""
        inputs = frame_input(audio, frames, self.stride, self.receptive, self.normalize)
        out = self.model(inputs.to(self.model.device), output_hidden_states=True)
        return to_frames(select_layer(out.hidden_states, layer).float(), frames)


class CtcTranscriber:
    """``stt``: a CTC model and its processor; greedy transcripts with word timings, or forced alignment."""

    kind = "stt"

    def __init__(self, model, tokenizer, spec: str, normalize: bool):
        self.model, self.tokenizer, self.spec, self.normalize = model.eval(), tokenizer, spec, normalize
        self.stride, self.receptive = conv_geometry(model.config)
        vocab = tokenizer.get_vocab()
        blank = model.config.pad_token_id
        self.blank_id = int(blank if blank is not None else tokenizer.pad_token_id)
        self.delimiter_id = getattr(tokenizer, "word_delimiter_token_id", None)
        letters = [token for token in vocab if len(token) == 1 and token.isalpha()]
        self.upper = sum(token.isupper() for token in letters) > len(letters) / 2
        specials = set(tokenizer.all_special_ids) | {self.blank_id, self.delimiter_id}
        self.chars = {token: index for token, index in vocab.items() if len(token) == 1 and index not in specials}
        self.id_to_token = {index: token for token, index in self.chars.items()}  # specials spell nothing

    @classmethod
    def load(cls, spec: str, device: torch.device) -> "CtcTranscriber":
        from transformers import AutoModelForCTC, AutoProcessor

        model = _from_pretrained(AutoModelForCTC.from_pretrained, spec, "CTC speech-to-text model (--stt)")
        _speech_config_check(model, spec, "CTC speech model")
        processor = _from_pretrained(AutoProcessor.from_pretrained, spec, "processor of the --stt model")
        tokenizer = getattr(processor, "tokenizer", processor)
        return cls(model.to(device), tokenizer, spec, _wants_normalize(spec))

    @torch.inference_mode()
    def log_probs(self, audio: torch.Tensor, frames: int) -> np.ndarray:
        """Audio [B, L] -> CTC log-probabilities [B, T, V] (T == frames for a 50 Hz model)."""
        inputs = frame_input(audio, frames, self.stride, self.receptive, self.normalize)
        logits = self.model(inputs.to(self.model.device)).logits.float()
        return torch.log_softmax(logits, dim=-1).cpu().numpy()

    def transcribe(self, log_probs: np.ndarray) -> list[WordSpan]:
        """Greedy decoding of one signal's log-probabilities [T, V]: words with their frames."""
        return greedy_word_spans(log_probs.argmax(axis=-1), self.blank_id, self.delimiter_id, self.id_to_token)

    def word_tokens(self, word: str) -> list[int]:
        """A word in the CTC vocabulary: case folded to the vocabulary's, characters it lacks dropped."""
        word = word.upper() if self.upper else word.lower()
        return [self.chars[c] for c in word if c in self.chars]

    def align(self, log_probs: np.ndarray, words: Sequence[str]) -> list[tuple[int, int] | None]:
        """Forced alignment of known words to one signal's log-probabilities [T, V]."""
        return forced_word_spans(log_probs, [self.word_tokens(w) for w in words], self.blank_id, self.delimiter_id)


class TextEncoderTeacher:
    """``lm``: hidden states of a text encoder per token."""

    kind = "lm"

    def __init__(self, model, tokenizer, spec: str):
        self.model, self.tokenizer, self.spec = model.eval(), tokenizer, spec
        self.dim = int(model.config.hidden_size)
        limits = [tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", None)]
        self.window = int(min(v for v in limits if v is not None and v < 1_000_000))

    @classmethod
    def load(cls, spec: str, device: torch.device) -> "TextEncoderTeacher":
        from transformers import AutoModel, AutoTokenizer

        model = _from_pretrained(AutoModel.from_pretrained, spec, "language model (--lm)")
        tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, spec, "tokenizer of the --lm model")
        return cls(model.to(device), tokenizer, spec)

    @torch.inference_mode()
    def _run(self, batch: dict, layer: Layer) -> torch.Tensor:
        batch = {key: value.to(self.model.device) for key, value in batch.items()}
        out = self.model(**batch, output_hidden_states=True)
        return select_layer(out.hidden_states, layer).float().cpu()

    def pad_features(self, texts: Sequence[str], frames: int, layer: Layer) -> np.ndarray:
        """The paper's rule: tokens padded / truncated to min(frames, window) -> [B, min(frames, window), D]."""
        length = max(2, min(frames, self.window))
        batch = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=length,
                               return_tensors="pt")
        return self._run(dict(batch), layer)[:, :frames].numpy()

    def word_features(self, words_per_text: Sequence[Sequence[str]],
                      layer: Layer) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per text, (token features [N, D], word index per token [N]) of its word tokens, special tokens left
        out. A text longer than the window is encoded in consecutive windows of whole words, each with its own
        special tokens (a single word longer than a window is truncated)."""
        if not getattr(self.tokenizer, "is_fast", False):
            raise DmcodecError(f"{self.spec}: --lm-align ctc needs a fast tokenizer (word ids per token)")
        chunks, owners = [], []  # chunk: a list of words; owner: (text index, index of its first word)
        for text_index, words in enumerate(words_per_text):
            for first, last in self._windows(list(words)):
                chunks.append(list(words[first:last]))
                owners.append((text_index, first))
        parts: list[list] = [[] for _ in words_per_text]
        for (text_index, first), (features, word_ids) in zip(owners, self._encode_chunks(chunks, layer), strict=True):
            parts[text_index].append((features, word_ids + first))
        return [(np.concatenate([f for f, _ in p]) if p else np.zeros((0, self.dim), np.float32),
                 np.concatenate([w for _, w in p]) if p else np.zeros(0, np.int64)) for p in parts]

    def _windows(self, words: list[str]) -> list[tuple[int, int]]:
        """[first, last) word ranges whose tokens fit in one window with the special tokens."""
        if not words:
            return []
        room = self.window - len(self.tokenizer("", add_special_tokens=True)["input_ids"])
        word_ids = self.tokenizer(words, is_split_into_words=True, add_special_tokens=False).word_ids()
        counts = np.bincount([w for w in word_ids if w is not None], minlength=len(words))
        windows, first, used = [], 0, 0
        for index, count in enumerate(counts):
            if used + count > room and index > first:
                windows.append((first, index))
                first, used = index, 0
            used += count
        return windows + [(first, len(words))]

    def _encode_chunks(self, chunks: list[list[str]], layer: Layer) -> list[tuple[np.ndarray, np.ndarray]]:
        """Word lists -> (features [n, D] of their word tokens, word index per token [n]); one forward pass."""
        if not chunks:
            return []
        batch = self.tokenizer(chunks, is_split_into_words=True, truncation=True, max_length=self.window,
                               padding=True, return_tensors="pt")
        hidden = self._run(dict(batch), layer)
        out = []
        for row in range(len(chunks)):
            word_ids = batch.word_ids(row)
            keep = [position for position, word in enumerate(word_ids) if word is not None]
            out.append((hidden[row, keep].numpy(), np.asarray([word_ids[p] for p in keep], dtype=np.int64)))
        return out


@dataclass(frozen=True)
class TeacherKind:
    """A registered kind of teacher: its name (the HDF5 group's ``kind``), its role and its loader."""

    name: str
    role: str
    load: Callable[[str, torch.device], object]


TEACHER_KINDS: dict[str, TeacherKind] = {kind.name: kind for kind in (
    TeacherKind("sm", "speech feature model (HuBERT / wav2vec2 / WavLM hidden states)", SpeechFeatureTeacher.load),
    TeacherKind("stt", "CTC speech-to-text model and processor (transcripts, word timings)", CtcTranscriber.load),
    TeacherKind("lm", "text encoder (BERT / ELECTRA / any encoder) hidden states per token", TextEncoderTeacher.load),
)}


def load_teacher(kind: str, spec: str, device: torch.device):
    """Load a teacher of a registered kind from a Hugging Face id or a local folder."""
    if kind not in TEACHER_KINDS:
        raise DmcodecError(f"unknown teacher kind {kind!r}; known: {', '.join(TEACHER_KINDS)}")
    return TEACHER_KINDS[kind].load(spec, device)
