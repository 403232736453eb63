"""``dmcodec export``: a code store -> sharded speech-LM training data (the work is in ``lm.export``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..corpus.progress import RichProgress
from ..lm.bpe import train_bpe
from ..lm.export import DEFAULT_SHARD_SIZE, export_store
from ..lm.formats import FORMATS
from ..lm.labels import Labels, read_labels
from ..lm.tokens import LAYOUTS
from ..outputs import check_folder_output
from .common import JSON_FILE_HELP, JSON_HELP, check_json_file, console, console_err, report_json


def export(
    store: Path = typer.Argument(..., help="Code store (.h5) made by `dmcodec encode`."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder to fill with shards and dmcodec-export.json."),
    fmt: str = typer.Option("hf", "--format", help=f"{' | '.join(FORMATS)}: Hugging Face parquet shards, WebDataset "
                            "tar shards, JSON lines, or a lhotse CutSet."),
    layout: Optional[str] = typer.Option(None, help=f"{' | '.join(LAYOUTS)} | bpe (see docs/export.md; default "
                                         "flat, for lhotse parallel)."),
    bpe: Optional[Path] = typer.Option(None, help="--layout bpe: tokenizer folder made by `dmcodec bpe`."),
    n_q: Optional[int] = typer.Option(None, "--n-q", help="Codebooks to use (default: all in the store)."),
    codebook_offsets: Optional[bool] = typer.Option(None, "--codebook-offsets/--no-codebook-offsets",
                                                    help="Codebook k's code c as token k * codebook_size + c "
                                                    "(default: on for flat only)."),
    shard_size: int = typer.Option(DEFAULT_SHARD_SIZE, help="Utterances per shard."),
    manifest: Optional[Path] = typer.Option(None, help="JSONL with \"id\" and \"text\" / \"speaker\", or a "
                                            "lhotse CutSet: adds those columns."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a folder's content that is not this "
                                   "export's (never an input; only files export wrote are removed)."),
) -> None:
    """Turn a code store into token sequences for training a speech LM; run again to resume."""
    inputs = [store, *([manifest] if manifest else []), *([bpe] if bpe else [])]
    check_folder_output(output, inputs=inputs)
    check_json_file(json_file, inputs, overwrite)
    labels = read_labels(manifest) if manifest else Labels()
    summary = export_store(store, output, fmt, layout, n_q, codebook_offsets, shard_size, labels,
                           RichProgress(console_err), overwrite, bpe, inputs=tuple(inputs[1:]))
    if not report_json(summary.to_dict(), json_out, json_file):
        console.print(f"{output}: {summary.exported} exported, {summary.skipped} already done, "
                      f"{len(summary.failures)} failed of {summary.total} ({summary.shards} {fmt} shards, "
                      f"{summary.tokens:,} tokens in {summary.wall_seconds:.1f} s)")
    if summary.failures:
        console_err.print(f"[yellow]{len(summary.failures)} utterance(s) failed; reasons in "
                          f"{summary.failures_file}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(1)


def bpe(
    store: Path = typer.Argument(..., help="Code store (.h5) to train on."),
    output: Path = typer.Option(..., "-o", "--output", help="Folder for the tokenizer (tokenizer.json, "
                                "dmcodec-bpe.json)."),
    n_q: Optional[int] = typer.Option(None, "--n-q", help="Codebooks to use (default: all in the store)."),
    merges: int = typer.Option(4096, help="Tokens learned beyond the K x codebook_size codes and BOS / EOS / PAD."),
    chunk_seconds: int = typer.Option(30, help="Train on pieces of this many seconds of codes."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
    json_file: Optional[Path] = typer.Option(None, "--json-file", help=JSON_FILE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder that holds no "
                                   "tokenizer of dmcodec (never an input)."),
) -> None:
    """Train an acoustic BPE tokenizer (codec-bpe) on a store; export with --layout bpe --bpe DIR."""
    check_folder_output(output, inputs=[store])
    check_json_file(json_file, [store], overwrite)
    tokenizer = train_bpe(store, output, n_q, merges, chunk_seconds, overwrite)
    summary = {"output": str(output), "n_q": tokenizer.n_q, "vocab_size": tokenizer.vocab_size,
               "special_tokens": tokenizer.to_dict()["special_tokens"]}
    if not report_json(summary, json_out, json_file):
        console.print(f"{output}: BPE tokenizer over {tokenizer.n_q} codebooks, {tokenizer.vocab_size:,} tokens")


def register(app: typer.Typer) -> None:
    app.command()(export)
    app.command()(bpe)
