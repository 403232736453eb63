"""Speech recognition for WER / WIL: a Hugging Face CTC or Whisper model, and the text normaliser.

Both sides of a WER comparison go through ``normalize_text`` so that case and punctuation never count
as errors.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DmcodecError
from .metrics import METRIC_RATE

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_NOT_WORD = re.compile(r"[^\w' ]+")
_LOOSE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")
WHISPER_CHUNK_S = 30


def normalize_text(text: str) -> str:
    """Unicode NFKC, lower case, curly apostrophes -> ', every character that is not a letter, digit,
    apostrophe or space -> space (so "well-known" -> "well known"), apostrophes kept only inside words
    ("don't" stays, "'quoted'" -> "quoted"), whitespace collapsed. Numbers are not spelled out."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_APOSTROPHES).replace("_", " ")
    text = _LOOSE_APOSTROPHE.sub(" ", _NOT_WORD.sub(" ", text))
    return " ".join(text.split())


@dataclass
class Transcriber:
    """A loaded ASR model: ``transcribe(samples)`` on mono 16 kHz float audio [L] -> raw text."""

    spec: str
    kind: str  #: "ctc" or "whisper"
    model: Any
    processor: Any
    device: Any

    def transcribe(self, samples: np.ndarray) -> str:
        samples = np.asarray(samples, dtype=np.float32)
        return _transcribe_whisper(self, samples) if self.kind == "whisper" else _transcribe_ctc(self, samples)


def _transcribe_ctc(asr: Transcriber, samples: np.ndarray) -> str:
    import torch

    inputs = asr.processor(samples, sampling_rate=METRIC_RATE, return_tensors="pt")
    with torch.inference_mode():
        logits = asr.model(inputs.input_values.to(asr.device)).logits
    return asr.processor.batch_decode(logits.argmax(dim=-1).cpu())[0]


def _transcribe_whisper(asr: Transcriber, samples: np.ndarray) -> str:
    import torch

    long_form = len(samples) > WHISPER_CHUNK_S * METRIC_RATE
    options = dict(truncation=False, padding="longest", return_attention_mask=True) if long_form else {}
    inputs = asr.processor(samples, sampling_rate=METRIC_RATE, return_tensors="pt", **options)
    features = inputs.input_features.to(asr.device, asr.model.dtype)
    extra = {"attention_mask": inputs.attention_mask.to(asr.device)} if long_form else {}
    if getattr(asr.model.generation_config, "task_to_id", None):
        extra["task"] = "transcribe"  # multilingual checkpoints; English-only ones have no tasks
    with torch.inference_mode():
        ids = asr.model.generate(features, **extra)
    return asr.processor.batch_decode(ids, skip_special_tokens=True)[0]


def load_asr(spec: str, device: Any = "cpu") -> Transcriber:
    """Load a CTC (wav2vec2, HuBERT, ...) or Whisper model and its processor from a hub id or local path."""
    from transformers import AutoConfig, AutoModelForCTC, AutoModelForSpeechSeq2Seq, AutoProcessor

    try:
        config = AutoConfig.from_pretrained(spec)
        kind = "whisper" if config.model_type == "whisper" else "ctc"
        model_class = AutoModelForSpeechSeq2Seq if kind == "whisper" else AutoModelForCTC
        model = model_class.from_pretrained(spec).eval().to(device)
        processor = AutoProcessor.from_pretrained(spec)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DmcodecError(f"{spec}: cannot load an ASR model ({reason}); give a local directory or a "
                           "Hugging Face id of a CTC (wav2vec2, HuBERT) or Whisper model") from None
    return Transcriber(spec, kind, model, processor, device)
