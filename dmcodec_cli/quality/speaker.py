"""Speaker similarity: the cosine between speaker embeddings of the original and the degraded signal.

Two kinds of encoder: Resemblyzer (its weights ship in the package, so it works offline; the default)
and a Hugging Face speaker-verification model with an x-vector head (``AutoModelForAudioXVector``:
WavLM / wav2vec2 / UniSpeech-SAT ``...-sv`` checkpoints), by hub id or local directory.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import DmcodecError
from .metrics import METRIC_RATE, MetricValue, Missing, finite, missing_library

RESEMBLYZER = "resemblyzer"
#: Less voiced speech than this gives an embedding of noise, not of a speaker.
MIN_SECONDS = 0.5
TOO_SHORT = f"too short for speaker similarity: less than {MIN_SECONDS:g} s of voiced speech"


class SpeakerEncoder(Protocol):
    def embed(self, samples: np.ndarray) -> np.ndarray | Missing:
        """Mono 16 kHz audio [L] -> speaker embedding [D], or why there is none."""


@dataclass
class ResemblyzerEncoder:
    """Resemblyzer's GE2E encoder; its preprocessing normalises the volume and cuts long silences (VAD)."""

    encoder: Any

    def embed(self, samples: np.ndarray) -> np.ndarray | Missing:
        from resemblyzer import preprocess_wav

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # its dB scaling of a silent clip divides by zero
            voiced = preprocess_wav(np.asarray(samples, np.float32))
        if len(voiced) < MIN_SECONDS * METRIC_RATE:
            return Missing(TOO_SHORT)
        return self.encoder.embed_utterance(voiced)


@dataclass
class XVectorEncoder:
    """A transformers audio model with an x-vector head and its feature extractor."""

    model: Any
    extractor: Any
    device: Any

    def embed(self, samples: np.ndarray) -> np.ndarray | Missing:
        import torch

        if len(samples) < MIN_SECONDS * METRIC_RATE or not np.any(samples):
            return Missing(TOO_SHORT)
        inputs = self.extractor(np.asarray(samples, np.float32), sampling_rate=METRIC_RATE, return_tensors="pt")
        with torch.inference_mode():
            embeddings = self.model(input_values=inputs.input_values.to(self.device)).embeddings
        return embeddings[0].float().cpu().numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> MetricValue:
    """Cosine similarity of two embeddings [D] (-1 to 1, higher is more alike)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return finite(float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))))


class SpeakerSimilarity:
    """Scores pairs with one encoder, or gives every pair the reason there is none (library missing)."""

    def __init__(self, encoder: SpeakerEncoder | Missing) -> None:
        self.encoder = encoder

    def __call__(self, reference: np.ndarray, degraded: np.ndarray) -> MetricValue:
        """Cosine of the embeddings of two whole 16 kHz signals [L1], [L2] (no alignment needed)."""
        if isinstance(self.encoder, Missing):
            return self.encoder
        reference_embedding, degraded_embedding = self.encoder.embed(reference), self.encoder.embed(degraded)
        if isinstance(reference_embedding, Missing):
            return reference_embedding
        if isinstance(degraded_embedding, Missing):
            return degraded_embedding
        return cosine(reference_embedding, degraded_embedding)


def load_speaker_similarity(spec: str = RESEMBLYZER, device: Any = "cpu") -> SpeakerSimilarity:
    """``"resemblyzer"`` or a Hugging Face speaker-verification model (hub id or local directory)."""
    if spec == RESEMBLYZER:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # webrtcvad imports the deprecated pkg_resources
                from resemblyzer import VoiceEncoder
        except ImportError as exc:
            return SpeakerSimilarity(missing_library(exc.name or RESEMBLYZER))
        return SpeakerSimilarity(ResemblyzerEncoder(VoiceEncoder(device=str(device), verbose=False)))
    return SpeakerSimilarity(_load_xvector(spec, device))


def _load_xvector(spec: str, device: Any) -> XVectorEncoder:
    from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

    try:
        model = AutoModelForAudioXVector.from_pretrained(spec).eval().to(device)
        extractor = AutoFeatureExtractor.from_pretrained(spec)
    except (OSError, ValueError, KeyError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DmcodecError(f"{spec}: cannot load a speaker-verification model ({reason}); give 'resemblyzer', "
                           "a local directory or a Hugging Face id of a model with an x-vector head "
                           "(e.g. microsoft/wavlm-base-plus-sv)") from None
    return XVectorEncoder(model, extractor, device)
