"""Codec commands: encode, decode, info (single files, or corpora via cli/corpus.py), convert."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..audio import AudioReader
from ..checkpoint import CONFIG_NAME, RELEASE_FORMAT, WEIGHTS_NAME, load_checkpoint, save_release
from ..codes import (
    EncodedAudio,
    check_encoded,
    check_num_samples,
    is_code_file,
    load_codes,
    load_encoded,
    save_codes,
    save_encoded,
)
from ..config import ConfigFile
from ..corpus.progress import SecondsProgress
from ..corpus.runner import is_store_path
from ..engine.allocator import tune_allocator
from ..engine.device import pick_device
from ..engine.windows import WindowPlan
from ..errors import DmcodecError
from ..inference import decode_file, encode_file
from ..outputs import AUDIO_OUT_SUFFIXES, CODE_SUFFIXES, check_file_output, check_folder_output, refuse_inputs
from ..registry import list_models, load_model
from .common import (
    DEVICE_HELP,
    JSON_FILE_HELP,
    JSON_HELP,
    MODEL_HELP,
    check_json_file,
    check_n_q,
    console,
    console_err,
    report_json,
)
from .corpus import CorpusArgs, decode_corpus, drop_decoder, encode_corpus, info_store, store_utterance, wants_corpus

OVERWRITE_HELP = ("Replace existing outputs that dmcodec did not write (never an input of the command; a folder "
                  "output is filled, never wiped).")


CORPUS = "Engine and corpus (a folder, a manifest, -o X.h5 or -o DIR/ take the corpus path)"


def encode(
    input: Path = typer.Argument(..., help="Audio file, folder (walked recursively) or manifest "
                                 "(.txt / .list: one path per line; .tsv / .csv / .jsonl: a path column and "
                                 "an optional id; lhotse .jsonl.gz)."),
    output: str = typer.Option(..., "-o", "--output", help="Code file: .npz (codes with model, length and rate) "
                               "or bare .npy (int16 codes, n_q x frames); a code store (.h5); or a folder of "
                               ".npy files (DIR/)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    n_q: Optional[int] = typer.Option(None, "--n-q", help="Codebooks to keep (default: all)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N] (under torchrun: each rank's own GPU)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Say what was done to the audio."),
    extensions: Optional[str] = typer.Option(None, help="Folder input: extensions to take, e.g. wav,flac "
                                             "(default: all audio).", rich_help_panel=CORPUS),
    batch_seconds: float = typer.Option(240.0, help="Audio seconds per batch.", rich_help_panel=CORPUS),
    workers: int = typer.Option(1, help="Audio reading worker processes (0: none).", rich_help_panel=CORPUS),
    whole_seconds: float = typer.Option(WindowPlan.whole_seconds, help="Inputs up to this long are encoded whole; "
                                        "longer ones in windows ...", rich_help_panel=CORPUS),
    window_seconds: float = typer.Option(WindowPlan.window_seconds, help="... keeping this many seconds each ...",
                                         rich_help_panel=CORPUS),
    context_seconds: float = typer.Option(WindowPlan.context_seconds, help="... with this much context on each side.",
                                          rich_help_panel=CORPUS),
    dtype: str = typer.Option("fp32", help="Encoder arithmetic: fp32 (reference codes), bf16 (faster on CPUs with "
                              "AVX512-BF16 and on GPUs; 90-96 % of codes identical) or fp16 (GPUs).",
                              rich_help_panel=CORPUS),
    num_shards: int = typer.Option(1, help="Without torchrun: split the inputs into this many shares ...",
                                   rich_help_panel=CORPUS),
    shard_index: int = typer.Option(0, help="... and encode this one (then `dmcodec merge`).",
                                    rich_help_panel=CORPUS),
    commit_every: int = typer.Option(256, help="Utterances per crash-safe commit.", rich_help_panel=CORPUS),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Encode an audio file into discrete codes, or a whole corpus into a code store."""
    args = CorpusArgs(extensions, batch_seconds, workers, window_seconds, context_seconds, whole_seconds, dtype,
                      num_shards, shard_index, commit_every)
    check_json_file(json_file, [input], overwrite)
    if wants_corpus(input, output):
        encode_corpus(input, output, model, n_q, device, args, json_out, json_file, overwrite)
        return
    output_file = check_file_output(output, CODE_SUFFIXES, "codes", inputs=[input], overwrite=overwrite,
                                    ours=is_code_file)
    options = args.run_options(None).engine  # validates the options before the model loads
    codec = drop_decoder(load_model(model, pick_device(device)))
    n_q = check_n_q(n_q, codec.n_q)
    tune_allocator()  # this process encodes: the engine's allocator policy (engine.allocator)
    with AudioReader(input, codec.sample_rate) as reader:
        long = reader.duration > options.windows.longest_whole_seconds
        with SecondsProgress(reader.duration, f"encode {input.name}", console_err, disable=not long) as bar:
            codes = encode_file(codec, reader, n_q, options, bar.advance)
    encoded = EncodedAudio(codes, reader.samples_read, codec.sample_rate, codec.fingerprint, options.dtype)
    if output_file.suffix.lower() == ".npz":
        save_encoded(output_file, encoded)
    else:
        save_codes(output_file, codes)
    source = reader.format
    summary = {"input": str(input), "output": str(output_file), "n_q": encoded.n_q, "frames": encoded.frames,
               "num_samples": encoded.num_samples, "seconds": round(encoded.duration, 3),
               "sample_rate": encoded.sample_rate, "source_sample_rate": source.source_rate,
               "audio": source.describe(), "model": encoded.model_fingerprint, "dtype": encoded.dtype}
    if report_json(summary, json_out, json_file):
        return
    if verbose:
        console_err.print(f"{input}: {source.source_rate} Hz, {source.source_channels} channel(s); {source.describe()}")
    console.print(f"{input} -> {output_file}: {encoded.n_q} x {encoded.frames} codes ({encoded.duration:.2f} s)")


def decode(
    input: Path = typer.Argument(..., help="Code file (.npz, or bare .npy) or code store (.h5)."),
    output: str = typer.Option(..., "-o", "--output", help="Audio file to write (.wav, .flac or .ogg); for a code "
                               "store, a folder (one file per utterance), or a file for a store of one utterance "
                               "(or one --ids)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    num_samples: Optional[int] = typer.Option(None, "--num-samples", help="Bare .npy codes: trim the audio to this "
                                              "many samples, the original length (default: frames x hop)."),
    force: bool = typer.Option(False, "--force", help="Decode codes that another model made (.npz)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
    ids: Optional[str] = typer.Option(None, help="Code store: comma-separated utterance ids (default: all)."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Decode codes into audio at the model rate, trimmed to the original length (.npz, stores, --num-samples)."""
    check_json_file(json_file, [input], overwrite)
    if is_store_path(input) and not is_audio_file(output):
        decode_corpus(input, Path(output), ids, model, device, json_out, json_file, overwrite)
        return
    output_file = check_file_output(output, AUDIO_OUT_SUFFIXES, "audio", inputs=[input], overwrite=overwrite)
    if num_samples is not None and input.suffix.lower() != ".npy":
        raise DmcodecError(f"{input}: --num-samples is for bare .npy codes; .npz files and stores carry the length")
    encoded = (store_utterance(input, ids) if is_store_path(input)
               else load_encoded(input) if input.suffix.lower() == ".npz" else None)
    codec = load_model(model, pick_device(device))
    if encoded is not None:
        codes = check_encoded(encoded, codec.config, codec.fingerprint, force, str(input))
        num_samples = encoded.num_samples
    else:
        codes = load_codes(input, codec.config)
        if num_samples is not None:
            check_num_samples(num_samples, codes.shape[1], codec.hop_length, f"{input}: --num-samples")
    written = decode_file(codec, codes, output_file, num_samples)  # window by window, written as decoded
    if report_json({"input": str(input), "output": str(output_file), "n_q": int(codes.shape[0]),
                    "frames": int(codes.shape[1]), "num_samples": written, "sample_rate": codec.sample_rate},
                   json_out, json_file):
        return
    console.print(f"{input} -> {output_file}: {written / codec.sample_rate:.2f} s at {codec.sample_rate} Hz")


def is_audio_file(output: str) -> bool:
    """``-o`` names one audio file (not a folder)."""
    return Path(output).suffix.lower() in AUDIO_OUT_SUFFIXES and not output.endswith(("/", "\\"))


def model_summary(model_spec: Optional[str]) -> dict:
    codec = load_model(model_spec, "cpu", for_inference=False)
    config = codec.config
    params = sum(p.numel() for p in codec.parameters())
    return {"model": model_spec, "fingerprint": codec.fingerprint, "parameters": params,
            "sample_rate": config.sample_rate, "hop_length": config.hop_length, "frame_rate": config.frame_rate,
            "n_q": config.n_q, "codebook_size": config.codebook_size,
            "bitrate_bps": {str(k): config.bitrate(k) for k in range(1, config.n_q + 1)},
            "config": codec.config_file.to_dict()}


def info_model(model_spec: Optional[str], json_out: bool, json_file: Optional[Path]) -> None:
    summary = model_summary(model_spec)
    if report_json(summary, json_out, json_file):
        return
    table = Table(title=f"model {model_spec or '(default)'}", show_header=False)
    table.add_row("fingerprint", summary["fingerprint"])
    table.add_row("parameters", f"{summary['parameters']:,}")
    table.add_row("sample rate", f"{summary['sample_rate']} Hz")
    table.add_row("frame rate", f"{summary['frame_rate']:g} frames/s (hop {summary['hop_length']})")
    table.add_row("codebooks", f"{summary['n_q']} x {summary['codebook_size']}")
    table.add_row("bitrate", ", ".join(f"{k}: {v / 1000:g} kbps" for k, v in summary["bitrate_bps"].items()))
    for key, value in summary["config"].items():
        table.add_row(f"config.{key}", str(value))
    console.print(table)


def info(
    target: Optional[str] = typer.Argument(None, help="A model (see --model of encode) or a code store (.h5)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
) -> None:
    """Describe a model (config, parameters, bitrate, fingerprint) or a code store (size, codebook usage)."""
    check_json_file(json_file, [Path(target)] if target else [])
    if target is not None and is_store_path(target):
        info_store(Path(target), json_out, json_file)
        return
    info_model(target, json_out, json_file)


def models(
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
) -> None:
    """List the registered models (names --model takes) with their fingerprints."""
    check_json_file(json_file)
    found = list_models()
    if report_json({"models": found}, json_out, json_file):
        return
    table = Table(title="registered models")
    for column in ("name", "fingerprint", "sample rate", "frame rate", "codebooks", "default"):
        table.add_column(column)
    for row in found:
        table.add_row(row["name"], row["fingerprint"], f"{row['sample_rate']} Hz", f"{row['frame_rate']:g}/s",
                      f"{row['n_q']} x {row['codebook_size']}", "yes" if row["default"] else "")
    console.print(table)


def convert(
    checkpoint: Path = typer.Argument(..., help="Official .pt state dict, trainer package or .safetensors."),
    output: Path = typer.Option(..., "-o", "--output", help="Release directory to write."),
    config: Optional[Path] = typer.Option(None, help="config.json of the checkpoint (default: beside it, else "
                                          "inferred)."),
    fp16: bool = typer.Option(False, "--fp16", help="Store weights as float16 (half the size)."),
    inference_only: bool = typer.Option(False, "--inference-only",
                                        help="Leave out the codebooks' EMA statistics (training-only)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder that is not a dmcodec "
                                   "release folder (only config.json and model.safetensors are written)."),
) -> None:
    """Convert a checkpoint into the release format (config.json + model.safetensors)."""
    import torch

    check_release_output(output, checkpoint, config, overwrite)
    check_json_file(json_file, [checkpoint, *([config] if config else [])], overwrite)
    codec = load_checkpoint(checkpoint, ConfigFile.from_json(config) if config else None)
    fingerprint = save_release(codec, output, torch.float16 if fp16 else torch.float32, inference_only)
    if report_json({"input": str(checkpoint), "output": str(output), "fingerprint": fingerprint}, json_out, json_file):
        return
    console.print(f"{checkpoint} -> {output} (fingerprint {fingerprint[:16]})")


def is_release_folder(folder: Path) -> bool:
    """A folder that ``convert`` (or training) wrote: its model.safetensors says format dmcodec-model."""
    from safetensors import safe_open

    try:
        with safe_open(folder / WEIGHTS_NAME, "pt") as f:
            return (f.metadata() or {}).get("format") == RELEASE_FORMAT
    except Exception:  # any unreadable or foreign file: not ours
        return False


def check_release_output(output: Path, checkpoint: Path, config: Optional[Path], overwrite: bool) -> None:
    """Before loading: ``output`` may take config.json and model.safetensors (never over an input)."""
    inputs = [checkpoint, checkpoint.parent / CONFIG_NAME, *([config] if config else [])]
    refuse_inputs([output, output / CONFIG_NAME, output / WEIGHTS_NAME], inputs)
    check_folder_output(output, inputs=inputs)
    if output.is_dir() and any(output.iterdir()) and not overwrite and not is_release_folder(output):
        raise DmcodecError(f"{output}: the folder is not empty and is not a dmcodec release folder; pass --overwrite "
                           "to write config.json and model.safetensors into it (nothing else is touched) or choose "
                           "another -o")


def register(app: typer.Typer) -> None:
    app.command()(encode)
    app.command()(decode)
    app.command()(info)
    app.command()(convert)
    app.command()(models)
