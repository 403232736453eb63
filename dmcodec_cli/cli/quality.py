"""Quality commands: roundtrip (encode -> decode -> score) and score (existing pairs, no model)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..errors import DmcodecError
from ..inputs import read_transcripts
from ..outputs import (
    STORE_SUFFIXES,
    BadId,
    check_folder_output,
    check_writable,
    id_path,
    is_empty_folder,
    read_record,
    refuse_inputs,
    write_record,
)
from ..quality.metrics import METRIC_RATE
from ..quality.report import print_report
from ..quality.roundtrip import parse_n_q, roundtrip_files
from ..quality.scoring import Journal, Scorers, match_pairs, roundtrip_inputs, score_pairs
from ..quality.speaker import RESEMBLYZER
from ..quality.visqol import VisqolWorkers
from .codec import MODEL_HELP
from .common import console, console_err, print_json

ASR_HELP = ("ASR model for WER / WIL: Hugging Face id or local directory of a CTC (wav2vec2, HuBERT) "
            "or Whisper model.")
TRANSCRIPTS_HELP = ("TSV of file and text (header with 'file' and 'text' columns, or the first two columns) "
                    "to compute WER against; files not in it are compared with the ASR transcript of the original.")
SKIPPABLE = ("visqol", "dnsmos", "speaker")
JSON_HELP = "Print the results as JSON on stdout instead of the tables."
JSON_FILE_HELP = "Write all results to this JSON file; a re-run with the same file skips files already scored."
JOBS_HELP = "ViSQOL worker processes (default: the CPU cores)."
SPEAKER_HELP = ("Speaker encoder for the speaker similarity: 'resemblyzer' (offline) or a Hugging Face "
                "speaker-verification model (x-vector head) by id or local directory.")
SKIP_HELP = f"Metrics to leave out, comma-separated: {', '.join(SKIPPABLE)}."


@contextmanager
def _progress(total: int, label: str) -> Iterator:
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[current]}"), console=console_err,
                  transient=True) as bar:
        task = bar.add_task(label, total=total, current="")
        yield lambda name: bar.update(task, advance=1, current=name)


def _settings(mode: str, asr: Optional[str], transcripts: Optional[Path], skipped: set[str], speaker: str,
              **extra) -> dict:
    return {"mode": mode, "metric_rate": METRIC_RATE, "asr": asr,
            "transcripts": str(transcripts.resolve()) if transcripts else None,
            "speaker": None if "speaker" in skipped else speaker, **extra}


def _finish(result: dict, notes: list[str], json_out: bool, json_file: Optional[Path], summary_only: bool) -> None:
    if json_out:
        print_json(result)
    else:
        _print(result, notes, json_file, summary_only)
    failed = sum("error" in row for row in result["files"])
    if failed:
        console_err.print(f"[red]{failed} file(s) could not be scored[/]; the others are in the results")
        raise typer.Exit(1)


def _print(result: dict, notes: list[str], json_file: Optional[Path], summary_only: bool) -> None:
    print_report(console, result, show_files=not summary_only)
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if json_file:
        console.print(f"results: {escape(str(json_file))}")


MAX_JOBS = 64  #: as encode's --workers: more processes than that only cost memory


def _jobs(jobs: Optional[int]) -> int:
    if jobs is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        return max(1, min(cores, MAX_JOBS))
    if not 1 <= jobs <= MAX_JOBS:
        raise DmcodecError(f"--jobs {jobs}: give 1 to {MAX_JOBS} worker processes")
    return jobs


def _skipped(skip: Optional[str]) -> set[str]:
    names = {part.strip() for part in (skip or "").split(",") if part.strip()}
    unknown = sorted(names - set(SKIPPABLE))
    if unknown:
        raise DmcodecError(f"--skip {skip!r}: unknown metric {unknown[0]!r}; choose from {', '.join(SKIPPABLE)}")
    return names


@contextmanager
def _scorers(skip: set[str], jobs: Optional[int], speaker: str, asr: Optional[str], texts: dict[str, str],
             device) -> Iterator[Scorers]:
    """The metrics asked for, their models loaded; ViSQOL's worker processes end with the block."""
    from ..quality.speaker import load_speaker_similarity

    jobs = _jobs(jobs)
    similarity = None if "speaker" in skip else load_speaker_similarity(speaker, device)
    transcriber = _asr(asr, device)
    workers = VisqolWorkers(jobs) if "visqol" not in skip else None
    try:
        yield Scorers(workers, "dnsmos" not in skip, similarity, transcriber, texts)
    finally:
        if workers is not None:
            workers.close()


ROUNDTRIP_RECORD = ".dmcodec-roundtrip.json"
ROUNDTRIP_FORMAT = "dmcodec-roundtrip"


def _check_json_path(path: Optional[Path], inputs: list[Path]) -> None:
    """Before the work: --json-file is a file that can be written and none of the inputs (what it holds is
    checked by the journal: only a dmcodec quality JSON of the same settings is resumed, nothing else replaced)."""
    if path is None:
        return
    if path.is_dir():
        raise DmcodecError(f"{path}: is a folder; --json-file takes a file name such as results.json")
    refuse_inputs([path], inputs, "--json-file")
    check_writable(path, "--json-file")


def _check_outdir(outdir: Optional[Path], files, levels: list[int], overwrite: bool) -> None:
    """Before the work: an existing reconstruction / plot in -o is replaced only in a folder dmcodec made (its
    record) or with --overwrite. (A store id that cannot be a path under -o is a failed row of the run.)"""
    if outdir is None:
        return
    from ..quality.roundtrip import output_path

    several = len(levels) > 1
    _check_folder_files(outdir, files, lambda pair: [output_path(outdir, pair.stem, k, several, suffix)
                                                     for k in levels for suffix in (".wav", ".png")],
                        "pass --overwrite to replace it or " if not overwrite else None, "-o")


def _check_plots(plots: Optional[Path], pairs) -> None:
    """Before the work: ``score --plots`` replaces a PNG only in a folder dmcodec made (score has no --overwrite).
    Without matplotlib no plot is made, and the folder is left alone."""
    from ..quality.plots import unavailable

    if plots is not None and unavailable() is None:
        _check_folder_files(plots, pairs, lambda pair: [id_path(plots, pair.stem, ".png")], "", "--plots")


def _check_folder_files(folder: Path, pairs, targets, hint: Optional[str], option: str) -> None:
    """A folder filled with files per pair (``targets(pair)``): unless it is empty or holds dmcodec's record (or
    ``hint`` is None: the user allowed replacing), none of them may exist already. Then the record is written."""
    ours = read_record(folder, ROUNDTRIP_RECORD, ROUNDTRIP_FORMAT) is not None or is_empty_folder(folder)
    for pair in pairs if not ours and hint is not None else ():
        try:
            found = [target for target in targets(pair) if os.path.lexists(target)]
        except BadId:  # the pair fails on its own, before anything is written for it
            continue
        if found:
            raise DmcodecError(f"{found[0]}: exists and was not written by dmcodec; {hint}choose another {option}")
    write_record(folder, ROUNDTRIP_RECORD, {"format": ROUNDTRIP_FORMAT, "format_version": 1})


def _asr(spec: Optional[str], device):
    if spec is None:
        return None
    from ..quality.asr import load_asr

    return load_asr(spec, device)


def roundtrip(
    input: Path = typer.Argument(..., help="Audio file, folder of audio files (searched recursively) or code "
                                           "store (.h5; with --audio to compare with the originals)."),
    outdir: Optional[Path] = typer.Option(None, "-o", "--outdir",
                                          help="Write reconstructions (.wav), spectrogram PNGs and plots here."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    n_q: Optional[str] = typer.Option(None, "--n-q", help="Codebooks: one number or a list such as 1,2,4,8 "
                                                         "(default: all)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
    asr: Optional[str] = typer.Option(None, "--asr", help=ASR_HELP),
    transcripts: Optional[Path] = typer.Option(None, "--transcripts", help=TRANSCRIPTS_HELP),
    audio: Optional[Path] = typer.Option(None, "--audio", help="With a code store: the folder it was encoded "
                                                               "from (originals matched by id)."),
    speaker: str = typer.Option(RESEMBLYZER, "--speaker", help=SPEAKER_HELP),
    skip: Optional[str] = typer.Option(None, "--skip", help=SKIP_HELP),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help=JOBS_HELP),
    device: str = typer.Option("auto", help="auto, cpu or cuda[:N]."),
    summary_only: bool = typer.Option(False, "--summary-only", help="Leave out the per-file table."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace reconstructions / plots in -o that dmcodec "
                                   "did not write (never an input)."),
) -> None:
    """Encode and decode audio (or decode a code store), then score each reconstruction against its original."""
    from ..engine.device import pick_device
    from ..registry import load_model

    inputs = [input, *([audio] if audio else []), *([transcripts] if transcripts else [])]
    jobs = _jobs(jobs)  # options before any model loads
    if outdir is not None:
        check_folder_output(outdir, inputs=inputs)
    _check_json_path(json_file, inputs)
    skipped = _skipped(skip)
    torch_device = pick_device(device)
    texts = read_transcripts(transcripts) if transcripts else {}
    if input.suffix.lower() in STORE_SUFFIXES and input.is_file():
        run = _roundtrip_store(input, audio, model, n_q, torch_device)
    else:
        if audio is not None:
            raise DmcodecError("--audio is only for a code store input (.h5)")
        codec = load_model(model, torch_device)
        run = (roundtrip_inputs(input, outdir), codec, parse_n_q(n_q, codec.n_q), None)
    files, codec, levels, stored_codes = run
    _check_outdir(outdir, files, levels, overwrite)
    settings = _settings("roundtrip", asr, transcripts, skipped, speaker, input=str(input.resolve()),
                         model=codec.fingerprint)
    journal = Journal.open(json_file, settings, {k: codec.config.bitrate(k) for k in range(1, codec.n_q + 1)})
    notes: list[str] = []
    with _scorers(skipped, jobs, speaker, asr, texts, torch_device) as scorers, \
            _progress(len(files), "roundtrip") as advance:
        result = roundtrip_files(files, codec, levels, journal, outdir, scorers, advance, notes, stored_codes)
    _finish(result, notes, json_out, json_file, summary_only)


def _roundtrip_store(store_path: Path, audio: Optional[Path], model: Optional[str], n_q: Optional[str], device):
    """(pairs, model, levels, codes by id) for a code store; the store stays open for the process."""
    from ..corpus.store import CodeStore
    from ..quality.roundtrip import check_store_model, store_inputs, store_reader
    from ..registry import load_model

    store = CodeStore(store_path)
    codec = load_model(model, device)
    levels = parse_n_q(n_q, store.meta.n_q)
    check_store_model(store, codec, levels)
    return store_inputs(store, audio), codec, levels, store_reader(store)


def score(
    reference: Path = typer.Argument(..., help="Original audio file, or folder of originals."),
    degraded: Path = typer.Argument(..., help="Degraded file, or folder with the same relative paths "
                                              "(the extension may differ)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write a spectrogram PNG per pair here."),
    asr: Optional[str] = typer.Option(None, "--asr", help=ASR_HELP),
    transcripts: Optional[Path] = typer.Option(None, "--transcripts", help=TRANSCRIPTS_HELP),
    speaker: str = typer.Option(RESEMBLYZER, "--speaker", help=SPEAKER_HELP),
    skip: Optional[str] = typer.Option(None, "--skip", help=SKIP_HELP),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help=JOBS_HELP),
    device: str = typer.Option("auto", help="auto, cpu or cuda[:N] (for --asr and --speaker)."),
    summary_only: bool = typer.Option(False, "--summary-only", help="Leave out the per-file table."),
) -> None:
    """Score existing (original, degraded) pairs without a codec model, e.g. outputs of other codecs."""
    from ..engine.device import pick_device

    inputs = [reference, degraded, *([transcripts] if transcripts else [])]
    jobs = _jobs(jobs)
    _check_json_path(json_file, inputs)
    if plots is not None:
        check_folder_output(plots, inputs=inputs, option="--plots")
    skipped = _skipped(skip)
    pairs, unmatched = match_pairs(reference, degraded)
    _check_plots(plots, pairs)
    texts = read_transcripts(transcripts) if transcripts else {}
    settings = _settings("score", asr, transcripts, skipped, speaker, reference=str(reference.resolve()),
                         degraded=str(degraded.resolve()))
    journal = Journal.open(json_file, settings)
    notes = [f"{len(unmatched)} degraded file(s) match no reference, e.g. {unmatched[0]}"] if unmatched else []
    with _scorers(skipped, jobs, speaker, asr, texts, pick_device(device)) as scorers, \
            _progress(len(pairs), "score") as advance:
        result = score_pairs(pairs, journal, scorers, plots, advance, notes)
    _finish(result, notes, json_out, json_file, summary_only)


def register(app: typer.Typer) -> None:
    app.command()(roundtrip)
    app.command()(score)
