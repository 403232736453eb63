"""WER / WIL through a tiny, randomly initialised wav2vec2 CTC model built and saved locally (offline)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from cli import run_cli
from dmcodec_cli.audio import load_audio
from dmcodec_cli.errors import DmcodecError
from dmcodec_cli.quality.asr import load_asr, normalize_text

CLIPS = ("cmu_arctic_awb_arctic_a0007.wav", "vctk_p225_003.wav")


@pytest.fixture(scope="module")
def tiny_asr(tmp_path_factory) -> Path:
    """A 2-layer wav2vec2 CTC model + processor (character vocab written here) saved as a local directory."""
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    directory = tmp_path_factory.mktemp("tiny_asr")
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")}}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(directory / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|")
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True)
    torch.manual_seed(0)
    config = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, conv_dim=(16, 16, 16), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, pad_token_id=0)
    model = Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():
        model.lm_head.bias[vocab["|"]] += 0.3  # more word breaks: several words per random transcript
    model.save_pretrained(directory)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def folders(tmp_path_factory, speech_dir):
    """ref/ with two real clips, same/ with identical copies, noisy/ with noisy copies, and transcripts."""
    root = tmp_path_factory.mktemp("asr_pairs")
    rng = np.random.default_rng(0)
    for name in CLIPS:
        audio, rate = sf.read(speech_dir / name, dtype="float32")
        for folder, signal in (("ref", audio), ("same", audio), ("noisy", audio + rng.normal(0, 0.05, len(audio)))):
            (root / folder).mkdir(exist_ok=True)
            sf.write(root / folder / name, signal.astype(np.float32), rate)
    (root / "texts.tsv").write_text(f"file\ttext\n{CLIPS[0]}\tAnd you always want to see it, in the superlative!\n")
    return root


def direct_transcript(directory: Path, path: Path) -> str:
    """The model's greedy CTC transcript with plain transformers calls, normalised."""
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    processor = Wav2Vec2Processor.from_pretrained(directory)
    model = Wav2Vec2ForCTC.from_pretrained(directory).eval()
    samples = load_audio(path, 16000).samples
    with torch.no_grad():
        logits = model(processor(samples, sampling_rate=16000, return_tensors="pt").input_values).logits
    return normalize_text(processor.batch_decode(logits.argmax(-1))[0])


def test_wer_wil_with_a_local_ctc_model(tiny_asr, folders, tmp_path, capsys):
    import jiwer

    out = tmp_path / "asr.json"
    code, stdout, _ = run_cli(capsys, "score", folders / "ref", folders / "noisy", "--asr", tiny_asr,
                              "--transcripts", folders / "texts.tsv", "--json-file", out, "--device", "cpu",
                              "--skip", "visqol,dnsmos,speaker")
    assert code == 0, stdout
    assert "WER" in stdout and "WIL" in stdout
    rows = {row["file"]: row for row in json.loads(out.read_text())["files"]}
    given, from_asr = rows[CLIPS[0]], rows[CLIPS[1]]
    assert given["reference_text_source"] == "transcripts"
    assert given["reference_text"] == "and you always want to see it in the superlative"
    assert from_asr["reference_text_source"] == "asr"
    assert from_asr["reference_text"] == direct_transcript(tiny_asr, folders / "ref" / CLIPS[1])
    for name, row in rows.items():
        assert row["transcript"] == direct_transcript(tiny_asr, folders / "noisy" / name)
        assert len(row["transcript"].split()) > 1
        assert row["wer"] == pytest.approx(jiwer.wer(row["reference_text"], row["transcript"]))
        assert row["wil"] == pytest.approx(jiwer.wil(row["reference_text"], row["transcript"]))
        assert row["wer"] > 0
    references = [rows[name]["reference_text"] for name in sorted(rows)]
    transcripts = [rows[name]["transcript"] for name in sorted(rows)]
    corpus = json.loads(out.read_text())["corpus"]
    assert corpus == {"wer": pytest.approx(jiwer.wer(references, transcripts)),
                      "wil": pytest.approx(jiwer.wil(references, transcripts)), "n": 2}
    assert "corpus WER (all words pooled, 2 files)" in stdout


def test_identical_audio_has_zero_wer_against_the_asr_of_the_original(tiny_asr, folders, capsys):
    code, stdout, _ = run_cli(capsys, "score", folders / "ref", folders / "same", "--asr", tiny_asr, "--json",
                              "--device", "cpu", "--skip", "visqol,dnsmos,speaker")
    assert code == 0
    result = json.loads(stdout)
    for row in result["files"]:
        assert row["reference_text_source"] == "asr" and row["reference_text"]
        assert row["wer"] == 0.0 and row["wil"] == 0.0
    assert result["summary"]["wer"] == {"mean": 0.0, "std": 0.0, "ci95": 0.0, "n": 2}


def test_unloadable_asr_model_is_a_user_error(tmp_path):
    with pytest.raises(DmcodecError, match="cannot load an ASR model"):
        load_asr(str(tmp_path / "nowhere"))


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    """A 1-layer Whisper with a byte-level vocabulary (no merges) and its processor, saved locally."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    directory = tmp_path_factory.mktemp("tiny_whisper")
    (directory / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(bytes_to_unicode().values())}))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), unk_token=end,
                                 bos_token=end, eos_token=end, pad_token=end)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|startoftranscript|>", "<|notimestamps|>"]})
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (end, "<|startoftranscript|>", "<|notimestamps|>")}
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                           max_source_positions=1500, max_target_positions=64, pad_token_id=ids[end],
                           bos_token_id=ids[end], eos_token_id=ids[end],
                           decoder_start_token_id=ids["<|startoftranscript|>"])
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(decoder_start_token_id=ids["<|startoftranscript|>"],
                                               eos_token_id=ids[end], pad_token_id=ids[end], max_length=16,
                                               no_timestamps_token_id=ids["<|notimestamps|>"])
    model.save_pretrained(directory)
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer)
    processor.save_pretrained(directory)
    return directory


def test_whisper_model_transcribes_short_and_long_audio(tiny_whisper, speech_dir):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    asr = load_asr(str(tiny_whisper))
    assert asr.kind == "whisper"
    samples = load_audio(speech_dir / "vctk_p225_003.wav", 16000).samples
    processor = WhisperProcessor.from_pretrained(tiny_whisper)
    model = WhisperForConditionalGeneration.from_pretrained(tiny_whisper).eval()
    with torch.no_grad():
        ids = model.generate(processor(samples, sampling_rate=16000, return_tensors="pt").input_features)
    expected = processor.batch_decode(ids, skip_special_tokens=True)[0]
    assert asr.transcribe(samples) == expected and expected
    long = np.tile(samples, int(np.ceil(35 * 16000 / len(samples))))  # over Whisper's 30 s window
    assert isinstance(asr.transcribe(long), str)
