"""Tiny random teacher models, built and saved locally (no network): HuBERT, wav2vec2-CTC (+ processor) and
BERT (+ tokenizer). Each ``make_*`` function writes a model folder that ``from_pretrained`` loads, returns
its path, and reuses a folder that is already there.

Their front ends are those of the real models (50 Hz: stride 320, receptive field 400 samples); everything
else is small (hidden size 32, 2 layers), so they run in milliseconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CONV = {"conv_dim": (16,) * 7, "conv_stride": (5, 2, 2, 2, 2, 2, 2), "conv_kernel": (10, 3, 3, 3, 3, 2, 2)}
SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
CTC_LETTERS = list("ABCDEFGHIJKLMNOPQRSTUVWXYZ'")
BERT_WORDS = ["the", "a", "and", "of", "to", "in", "is", "it", "that", "was", "he", "she", "hello", "world",
              "speech", "codec", "say", "nothing", "##s", "##ed", "##ing"]


def _done(folder: Path) -> bool:
    return (folder / "config.json").is_file()


def make_tiny_hubert(folder: str | Path, seed: int = 0) -> Path:
    """A random HuBERT feature model (hidden size 32, 2 layers, 3 hidden states) with its feature extractor."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    folder = Path(folder)
    if not _done(folder):
        torch.manual_seed(seed)
        config = HubertConfig(**SMALL, **CONV, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                              feat_extract_norm="group", do_stable_layer_norm=False)
        HubertModel(config).eval().save_pretrained(folder)
        Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=False).save_pretrained(folder)
    return folder


def ctc_vocab() -> dict[str, int]:
    """The wav2vec2-base-960h layout: <pad> (the CTC blank) = 0, specials, '|' word delimiter, letters."""
    tokens = ["<pad>", "<s>", "</s>", "<unk>", "|"] + CTC_LETTERS
    return {token: index for index, token in enumerate(tokens)}


def make_tiny_wav2vec2_ctc(folder: str | Path, seed: int = 0) -> Path:
    """A random wav2vec2-CTC model with its processor (CTC tokenizer over A-Z ' and '|', feature extractor)."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    folder = Path(folder)
    if not _done(folder):
        folder.mkdir(parents=True, exist_ok=True)
        vocab = ctc_vocab()
        (folder / "vocab.json").write_text(json.dumps(vocab))
        tokenizer = Wav2Vec2CTCTokenizer(str(folder / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                         word_delimiter_token="|")
        extractor = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
        Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(folder)
        torch.manual_seed(seed)
        config = Wav2Vec2Config(**SMALL, **CONV, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
                                vocab_size=len(vocab), pad_token_id=vocab["<pad>"], feat_extract_norm="group",
                                do_stable_layer_norm=False)
        Wav2Vec2ForCTC(config).eval().save_pretrained(folder)
    return folder


def make_tiny_bert(folder: str | Path, seed: int = 0, max_positions: int = 512) -> Path:
    """A random BERT (hidden size 32, 2 layers) with an uncased WordPiece tokenizer over a small vocabulary
    (special tokens, a few words, single letters), so any English text tokenizes."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    if not _done(folder):
        folder.mkdir(parents=True, exist_ok=True)
        letters = list("abcdefghijklmnopqrstuvwxyz'.,?!") + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz'"]
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + BERT_WORDS + letters
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tokenizer = BertTokenizerFast(str(folder / "vocab.txt"), do_lower_case=True, model_max_length=max_positions)
        tokenizer.save_pretrained(folder)
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=len(vocab), max_position_embeddings=max_positions, **SMALL)
        BertModel(config).eval().save_pretrained(folder)
    return folder


def make_tiny_teachers(folder: str | Path) -> dict[str, Path]:
    """All three under ``folder``: {"sm": hubert, "stt": wav2vec2-ctc, "lm": bert}."""
    folder = Path(folder)
    return {"sm": make_tiny_hubert(folder / "hubert"), "stt": make_tiny_wav2vec2_ctc(folder / "wav2vec2-ctc"),
            "lm": make_tiny_bert(folder / "bert")}
