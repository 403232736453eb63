"""Training-data commands: ``prep`` (sources -> segments + manifest) and ``extract`` (teacher features)."""

from __future__ import annotations

import importlib.util
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import DmcodecError
from ..loglines import LogLines, eta
from ..outputs import check_folder_output, check_writable, refuse_inputs
from .common import DEVICE_HELP, JSON_FILE_HELP, JSON_HELP, check_json_file, console, console_err, report_json


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """Progress on stderr driven by ``update(done, total)`` calls: a rich bar on a terminal, else a plain
    line every few seconds (a log, a pipe)."""
    lines = None if console_err.is_terminal else LogLines(console_err)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console_err, transient=True, disable=lines is not None) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            if lines is not None:
                lines.tick(lambda: f"{description}: {done}/{total}, ETA {eta(done, total, lines.elapsed)}")

        yield update


def _finish(report, summary: str, json_out: bool, json_file: Optional[Path]) -> None:
    """Lists the report's failures on stderr, prints it (JSON, or the summary line), exits 1 if some failed."""
    for failure in report.failures:
        console_err.print(f"[yellow]skipped:[/] {failure['error']}", highlight=False, soft_wrap=True)
    if not report_json(asdict(report), json_out, json_file):
        console.print(summary)
    if report.failures:
        raise typer.Exit(1)


def prep(
    sources: Optional[List[str]] = typer.Argument(None, help="Folders of audio files (their manifest.tsv / "
                                                  "transcripts.tsv give speaker and text), manifests (.txt, .tsv, "
                                                  ".csv, .jsonl with a path column; lhotse) or audio files."),
    output: Path = typer.Option(..., "-o", "--output", help="Output folder: manifest.jsonl, prep.json, audio/."),
    hf_dataset: Optional[str] = typer.Option(None, "--hf-dataset", help="Hugging Face dataset: hub name or a "
                                             "local save_to_disk folder (needs the `data` extra)."),
    split: str = typer.Option("train", "--split", help="Split of --hf-dataset to read."),
    hf_config: Optional[str] = typer.Option(None, "--hf-config", help="Configuration name of --hf-dataset."),
    hf_audio_column: str = typer.Option("audio", "--hf-audio-column", help="Audio column of --hf-dataset."),
    segment_seconds: float = typer.Option(3.0, "--segment-seconds", help="Segment length in seconds."),
    tail: str = typer.Option("pad", "--tail", help="Last partial segment: 'pad' (zero-pad to a full segment) "
                             "or 'drop'."),
    min_tail_seconds: float = typer.Option(0.5, "--min-tail-seconds", help="With --tail pad, tails shorter than "
                                           "this are dropped."),
    one_crop: bool = typer.Option(False, "--one-crop", help="The paper's rule: one random crop per utterance."),
    ratio: float = typer.Option(1.0, "--ratio", help="Fraction of the utterances to use (seeded choice)."),
    seed: int = typer.Option(1234, "--seed", help="Seed of --ratio, --one-crop and the split."),
    valid_fraction: float = typer.Option(0.05, "--valid-fraction", help="Fraction of speakers (of utterances "
                                         "when speakers are unknown) put in the validation split."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
) -> None:
    """Cut a corpus into 16 kHz mono segments (FLAC) with a JSONL manifest and a train / valid split."""
    from ..data.prep import PrepOptions, prepare
    from ..data.sources import hf_source, local_source

    options = PrepOptions(segment_seconds, tail, min_tail_seconds, one_crop, ratio, seed, valid_fraction)
    if not sources and not hf_dataset:
        raise DmcodecError("no source: give folders / manifests, or --hf-dataset NAME --split S")
    check_folder_output(output, inputs=[Path(source) for source in sources or []])
    check_json_file(json_file, [Path(source) for source in sources or []])
    utterances = [utt for source in sources or [] for utt in local_source(source)]
    if hf_dataset:
        utterances += list(hf_source(hf_dataset, split, hf_config, hf_audio_column))
    with progress_bar("prep") as update:
        report = prepare(utterances, output, options, update)
    _finish(report, report.summary(), json_out, json_file)


def extract(
    manifest: Path = typer.Argument(..., help="manifest.jsonl written by `dmcodec prep`."),
    output: Path = typer.Option(..., "-o", "--output", help="HDF5 feature file (appended to: runs resume)."),
    sm: Optional[str] = typer.Option(None, "--sm", help="Speech feature model (HuBERT / wav2vec2): HF id or "
                                     "folder, e.g. facebook/hubert-base-ls960."),
    sm_layer: str = typer.Option("avg", "--sm-layer", help="avg (mean of all hidden states), last, or an index."),
    stt: Optional[str] = typer.Option(None, "--stt", help="CTC speech-to-text model + processor, e.g. "
                                      "facebook/wav2vec2-base-960h."),
    transcripts: Optional[Path] = typer.Option(None, "--transcripts", help="Known texts by segment id: TSV "
                                               "'id<TAB>text' or JSONL; they win over the manifest's text and ASR."),
    ignore_manifest_text: bool = typer.Option(False, "--ignore-manifest-text", help="Transcribe every segment "
                                              "even when the manifest has its text."),
    lm: Optional[str] = typer.Option(None, "--lm", help="Text encoder (BERT / ELECTRA / ...), e.g. "
                                     "bert-base-uncased."),
    lm_layer: str = typer.Option("avg", "--lm-layer", help="avg, last, or an index."),
    lm_align: str = typer.Option("pad", "--lm-align", help="pad (the paper: tokens padded to the frame count) or "
                                 "ctc (word tokens on the frames where the word is spoken)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Segments per forward pass."),
    device: str = typer.Option("auto", "--device", help=DEVICE_HELP),
    dtype: str = typer.Option("float16", "--dtype", help="Stored precision: float16 or float32."),
    split: str = typer.Option("all", "--split", help="Segments of this split only: all, train or valid."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start the feature file again instead of resuming."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
) -> None:
    """Extract teacher features (SM and / or LM) of every segment into an HDF5 file, aligned to 50 Hz frames."""
    from ..data.extract import ExtractOptions
    from ..data.extract import extract as run_extract
    from ..data.teachers import parse_layer
    from ..engine.device import pick_device
    from ..inputs import read_transcripts

    if split not in ("all", "train", "valid"):
        raise DmcodecError(f"--split must be all, train or valid, got {split!r}")
    if (sm or stt or lm) and importlib.util.find_spec("transformers") is None:
        raise DmcodecError("extract runs its teachers with transformers, which is not installed: "
                           "pip install 'dmcodec[data]'")
    options = ExtractOptions(sm=sm, sm_layer=parse_layer(sm_layer), stt=stt, lm=lm, lm_layer=parse_layer(lm_layer),
                             lm_align=lm_align, transcripts=read_transcripts(transcripts) if transcripts else None,
                             use_manifest_text=not ignore_manifest_text, batch_size=batch_size, dtype=dtype,
                             splits=("train", "valid") if split == "all" else (split,))
    check_feature_output(output, [manifest, *([transcripts] if transcripts else [])], overwrite)
    check_json_file(json_file, [manifest, *([transcripts] if transcripts else [])], overwrite)
    with progress_bar("extract") as update:
        report = run_extract(manifest, output, options, pick_device(device), update, overwrite)
    _finish(report, f"{report.segments} segments: sm {report.computed['sm']}, lm {report.computed['lm']} computed, "
                    f"{report.already_done} already there; texts known {report.texts['known']}, "
                    f"ASR {report.texts['asr']}; {report.audio_seconds:.1f} s of audio in "
                    f"{report.elapsed_seconds:.1f} s -> {report.output}", json_out, json_file)


def check_feature_output(output: Path, inputs: list[Path], overwrite: bool) -> None:
    """Before any model loads: the feature file is a file (not a folder), none of the inputs (never deleted by
    --overwrite) and can be written. An existing feature file is resumed; any other file is refused unless
    --overwrite."""
    from ..data.features import check_feature_file

    if output.is_dir():
        raise DmcodecError(f"{output}: is a folder; -o takes the feature file to write, e.g. features.h5")
    refuse_inputs([output], inputs)
    check_writable(output)
    if not overwrite:
        check_feature_file(output)


def register(app: typer.Typer) -> None:
    app.command()(prep)
    app.command()(extract)
