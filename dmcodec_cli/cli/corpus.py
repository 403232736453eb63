"""Corpus commands: encoding folders / manifests into a code store, decoding and describing stores, merge.

``encode``, ``decode`` and ``info`` (in ``codec.py``) hand corpus inputs and ``.h5`` stores to the
functions here; ``merge`` is registered here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ..codes import EncodedAudio
from ..corpus.distributed import from_environment
from ..corpus.lock import store_lock
from ..corpus.progress import RichProgress
from ..corpus.report import decode_store, store_summary
from ..corpus.runner import RunOptions, check_failures_file, is_store_path, tokenize_corpus
from ..corpus.store import CodeStore, merge_stores, read_meta
from ..engine.device import pick_device
from ..engine.encoder import EngineOptions
from ..engine.windows import WindowPlan
from ..errors import DmcodecError
from ..inputs import collect_inputs, is_manifest, parse_extensions
from ..outputs import (
    STORE_SUFFIXES,
    check_file_output,
    check_folder_output,
    check_name_lengths,
    check_writable,
    refuse_inputs,
)
from ..registry import load_model
from .common import JSON_FILE_HELP, JSON_HELP, check_json_file, check_n_q, console, console_err, report_json


@dataclass
class CorpusArgs:
    """The corpus options of ``dmcodec encode``."""

    extensions: Optional[str] = None
    batch_seconds: float = 240.0
    workers: int = 1
    window_seconds: float = WindowPlan.window_seconds
    context_seconds: float = WindowPlan.context_seconds
    whole_seconds: float = WindowPlan.whole_seconds
    dtype: str = "fp32"
    num_shards: int = 1
    shard_index: int = 0
    commit_every: int = 256

    MAX_WORKERS = 64  #: reading processes: beyond this they only compete for the same cores and disk
    MAX_COMMIT_EVERY = 1_000_000  #: utterances per journal segment: a crash costs at most this many

    def run_options(self, n_q: Optional[int]) -> RunOptions:
        """The validated options of a run; any value that cannot be meant is one DmcodecError naming the
        option and what is allowed (the checks live in WindowPlan / EngineOptions / check_shard)."""
        import re

        from ..corpus.distributed import check_shard

        if not 0 <= self.workers <= self.MAX_WORKERS:
            raise DmcodecError(f"--workers must be in 0..{self.MAX_WORKERS} (audio reading processes; 0 reads in "
                               f"the main process), got {self.workers}")
        if not 1 <= self.commit_every <= self.MAX_COMMIT_EVERY:
            raise DmcodecError(f"--commit-every must be in 1..{self.MAX_COMMIT_EVERY} (utterances per "
                               f"crash-safe commit), got {self.commit_every}")
        check_shard(self.num_shards, self.shard_index)
        try:
            windows = WindowPlan(self.window_seconds, self.context_seconds, self.whole_seconds)
            engine = EngineOptions(self.batch_seconds, windows, self.dtype, n_q)
        except ValueError as exc:  # the library names its fields: window_seconds -> --window-seconds
            text = re.sub(r"\b(window|context|whole|batch)_seconds\b|\bdtype\b|\bn_q\b",
                          lambda m: "--" + m.group(0).replace("_", "-"), str(exc))
            raise DmcodecError(text) from None
        return RunOptions(engine, self.workers, commit_every=self.commit_every)


def wants_corpus(input: Path, output: str) -> bool:
    """A folder, a manifest, a ``.h5`` output or a folder output (``-o DIR/``) takes the corpus path."""
    return (input.is_dir() or is_manifest(input) or is_store_path(output) or output.endswith(("/", "\\"))
            or os.path.isdir(output))  # os.path: a name too long to stat is checked (and refused) later


def drop_decoder(codec):
    """Encoding never decodes: free the decoder's weights (about a third of the full-size model)."""
    import torch

    codec.decoder = torch.nn.Identity()
    return codec


def check_corpus_output(input: Path, output: str, overwrite: bool) -> None:
    """Before the model loads: the store or folder can be written, is not the input, and its failures file (if
    any) is one dmcodec wrote. What is inside is checked by the run (another model, files not ours, ids)."""
    path = Path(output)
    if is_store_path(output) and not output.endswith(("/", "\\")):
        check_name_lengths(path)
        refuse_inputs([path], [input])
        if path.is_dir():
            raise DmcodecError(f"{path}: is a folder, not a code store file; give -o NAME.h5 or -o DIR/ for .npy files")
        check_writable(path)
        check_failures_file(path.with_name(path.stem + ".failures.tsv"), overwrite)
    else:
        check_folder_output(path, inputs=[input])
        check_failures_file(path / "failures.tsv", overwrite)


def encode_corpus(input: Path, output: str, model: Optional[str], n_q: Optional[int], device: str,
                  args: CorpusArgs, json_out: bool, json_file: Optional[Path] = None, overwrite: bool = False) -> None:
    check_corpus_output(input, output, overwrite)
    rank = from_environment(args.num_shards, args.shard_index)
    try:
        options = args.run_options(n_q)  # bad options are refused before the model loads
        codec = drop_decoder(load_model(model, rank.device(device)))
        check_n_q(n_q, codec.n_q)
        items = collect_inputs(input, parse_extensions(args.extensions))
        progress = RichProgress(console_err, disable=not rank.is_main and rank.launched)
        refuse_inputs([output], [item.path for item in items])
        summary = tokenize_corpus(codec, items, output, options, rank, progress, overwrite)
    finally:
        rank.close()
    if rank.is_main or not rank.launched:
        report(summary.to_dict(), json_out, json_file)
    if summary.failures:
        raise typer.Exit(1)


def report(summary: dict, json_out: bool, json_file: Optional[Path]) -> None:
    if report_json(summary, json_out, json_file):
        return
    console.print(f"{summary['output']}: {summary['encoded']} encoded, {summary['skipped']} already done, "
                  f"{summary['failed']} failed of {summary['total']} ({summary['audio_seconds'] / 3600:.3f} h "
                  f"in {summary['wall_seconds']:.1f} s, {summary['real_time_factor']:.1f}x real time)")
    if summary["failures_file"]:
        console_err.print(f"[yellow]{summary['failed']} input(s) failed; reasons in {summary['failures_file']}[/]")


def parse_ids(ids: Optional[str]) -> Optional[list[str]]:
    """``--ids a,b``: the listed ids, or None (all)."""
    return [name.strip() for name in ids.split(",") if name.strip()] if ids else None


def store_utterance(path: Path, ids: Optional[str]) -> EncodedAudio:
    """The one utterance of a store (or the one ``--ids`` names), for ``decode STORE -o file.wav``."""
    chosen = parse_ids(ids)
    with CodeStore(path) as store:
        names = chosen or store.ids
        if len(names) != 1:
            raise DmcodecError(f"{path}: holds {len(names)} utterances; -o file.wav takes one (name it with --ids "
                               "ID), or give -o DIR/ for one file per utterance")
        if names[0] not in store:
            raise DmcodecError(f"{path}: no utterance {names[0]!r}; see `dmcodec info` for what the store holds")
        i = store.index(names[0])
        meta = store.meta
        return EncodedAudio(store[i], int(store.num_samples[i]), meta.sample_rate, meta.model_fingerprint, meta.dtype)


def decode_corpus(store: Path, outdir: Path, ids: Optional[str], model: Optional[str], device: str,
                  json_out: bool, json_file: Optional[Path] = None, overwrite: bool = False) -> None:
    """A store -> ``outdir/<id>.wav``; exits 1 when some ids failed (listed in ``outdir/failures.tsv``)."""
    check_folder_output(outdir, inputs=[store])
    check_failures_file(outdir / "failures.tsv", overwrite)
    codec = load_model(model, pick_device(device))
    summary = decode_store(codec, store, outdir, parse_ids(ids), progress=RichProgress(console_err),
                           overwrite=overwrite)
    written, failed = len(summary.written), len(summary.failures)
    if not report_json({"input": str(store), "output": str(outdir), "written": written, "failed": failed,
                        "failures_file": summary.failures_file}, json_out, json_file):
        console.print(f"{store} -> {outdir}: {written} audio files at {codec.sample_rate} Hz, {failed} failed")
    if failed:
        console_err.print(f"[yellow]{failed} utterance(s) not decoded; reasons in {summary.failures_file}[/]",
                          highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def info_store(path: Path, json_out: bool, json_file: Optional[Path] = None) -> None:
    summary = store_summary(path)
    if report_json(summary, json_out, json_file):
        return
    table = Table(title=f"code store {path}", show_header=False)
    table.add_row("utterances", f"{summary['utterances']:,}")
    table.add_row("audio", f"{summary['hours']:.3f} h")
    table.add_row("frames", f"{summary['frames']:,} at {summary['frame_rate']:g} frames/s")
    table.add_row("codebooks", f"{summary['n_q']} x {summary['codebook_size']}")
    table.add_row("model", summary["model_fingerprint"])
    table.add_row("arithmetic", summary["dtype"])
    console.print(table)
    usage = Table(title="codebook usage")
    for column in ("codebook", "codes used", "usage", "perplexity"):
        usage.add_column(column, justify="right")
    for row in summary["codebooks"]:
        usage.add_row(str(row["codebook"]), str(row["used"]), f"{row['usage']:.1%}", f"{row['perplexity']:.1f}")
    console.print(usage)


def merge(
    inputs: list[Path] = typer.Argument(..., help="Stores to combine, in this order (same model, --n-q and --dtype)."),
    output: Path = typer.Option(..., "-o", "--output", help="Store to write (.h5)."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output (never one of the inputs)."),
) -> None:
    """Combine code stores (e.g. one per machine) into one; an id seen twice keeps its first copy."""
    check_file_output(output, STORE_SUFFIXES, "a code store", inputs=inputs, overwrite=overwrite)
    check_json_file(json_file, inputs, overwrite)
    for path in inputs:
        read_meta(path)  # a clear error for a missing or foreign file before any writing
    with store_lock(output):  # refused while an encode run or another merge writes OUTPUT
        summary = merge_stores(output, inputs)
    if report_json(summary, json_out, json_file):
        return
    console.print(f"{output}: {summary['utterances']} utterances from {len(inputs)} stores "
                  f"({summary['duplicates_skipped']} duplicate ids skipped)")


def register(app: typer.Typer) -> None:
    app.command()(merge)
