"""``dmcodec export``: a code store -> sharded LM training data (Hugging Face parquet, WebDataset, JSONL, lhotse).

The output folder holds the shards and ``dmcodec-export.json``: the token spec (layout, K, vocabulary,
special ids, model fingerprint, frame rate), the settings and the shards finished so far. Shard ``i``
holds utterances ``[i * shard_size, (i + 1) * shard_size)`` of the store, so a run that stops (crash,
Ctrl-C, failed items) is resumed by running the same command again: finished shards are kept, the
others written. An utterance that cannot be read is a failed item (``failures.tsv``); its shard is
written without it and tried again by the next run.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..corpus.progress import Quiet
from ..corpus.runner import Failure, check_failures_file, write_failures
from ..corpus.store import CodeStore
from ..errors import DmcodecError
from ..outputs import OVERWRITE_HINT, read_record, refuse_inputs, write_record
from .bpe import BPE_FORMAT, BpeTokenizer
from .formats import FORMATS, Row
from .labels import Labels
from .tokens import TokenSpec

EXPORT_FORMAT = "dmcodec-export"
EXPORT_VERSION = 1
RECORD_NAME = "dmcodec-export.json"
DEFAULT_SHARD_SIZE = 10_000


@dataclass
class ExportSummary:
    output: str
    format: str
    total: int = 0  #: utterances in the store
    exported: int = 0  #: written by this run
    skipped: int = 0  #: in shards finished by an earlier run
    tokens: int = 0  #: tokens written by this run
    shards: int = 0
    failures: list[Failure] = field(default_factory=list)
    failures_file: str | None = None
    wall_seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"output": self.output, "format": self.format, "total": self.total, "exported": self.exported,
                "skipped": self.skipped, "failed": len(self.failures), "failures_file": self.failures_file,
                "shards": self.shards, "tokens": self.tokens, "wall_seconds": round(self.wall_seconds, 3),
                "tokens_per_second": round(self.tokens / max(self.wall_seconds, 1e-9), 1)}


def store_digest(store: CodeStore) -> str:
    """What identifies a store's content for resuming: model, ids and frame offsets."""
    digest = hashlib.sha256(store.meta.model_fingerprint.encode())
    digest.update(store.offsets.tobytes())
    digest.update("\0".join(store.ids).encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _shard_files(settings: dict) -> list[str]:
    """Every file of an export with these settings (from its format and shard count, not from a list in a file)."""
    fmt, total = settings.get("format"), settings.get("shards")
    writer = FORMATS.get(fmt) if isinstance(fmt, str) else None
    if writer is None or not isinstance(total, int) or total < 1:
        return []
    return [name for i in range(total) for name in writer.files(i, total)]


def _previous_shard_files(output: Path, settings: dict) -> list[Path]:
    """The shard files of the export recorded with ``settings`` that are in ``output`` now. Found by listing the
    folders the format writes into (never through a link), so a record claiming any number of shards costs only
    what the folder holds."""
    fmt, total = settings.get("format"), settings.get("shards")
    writer = FORMATS.get(fmt) if isinstance(fmt, str) else None
    if writer is None or not isinstance(total, int) or total < 1:
        return []
    found = []
    for folder in sorted({Path(pattern).parent for pattern in writer.patterns}):
        where = output / folder
        if where.is_symlink() or not where.is_dir():
            continue
        for entry in sorted(os.listdir(where)):
            name = (folder / entry).as_posix()
            numbers = {int(n) for n in re.findall(r"\d+", entry) if int(n) < total}
            if any(name in writer.files(i, total) for i in numbers):
                found.append(output / name)
    return found


def _previous_shards(output: Path, settings: dict, overwrite: bool) -> set[int]:
    """Shards a previous run with the same settings finished (and still on disk); refuses a folder that holds
    something else unless ``overwrite`` (then the previous export's shard files are removed, nothing else)."""
    record = read_record(output, RECORD_NAME, EXPORT_FORMAT)
    if record is None:
        if output.exists() and any(output.iterdir()) and not overwrite:
            raise DmcodecError(f"{output}: is not empty and holds no dmcodec export; {OVERWRITE_HINT} -o")
        return set()
    previous = record.get("settings")
    if not isinstance(previous, dict):
        previous = {}
    if previous == settings:
        files = FORMATS[settings["format"]].files
        finished = record.get("shards_done")
        return {i for i in (finished if isinstance(finished, list) else [])
                if isinstance(i, int) and 0 <= i < settings["shards"]
                and all((output / name).is_file() for name in files(i, settings["shards"]))}
    if not overwrite:
        changed = sorted(k for k in settings if previous.get(k) != settings[k])
        raise DmcodecError(f"{output}: holds an export with other settings ({', '.join(changed)} differ); "
                           f"{OVERWRITE_HINT} -o")
    for path in _previous_shard_files(output, previous):
        path.unlink(missing_ok=True)
    return set()


def _check_targets(output: Path, names: list[str], inputs: list[str | os.PathLike]) -> None:
    """Before any work: no file the export writes is one of its inputs (even with --overwrite), and no folder
    it writes into leads out of ``output`` through a link inside it (a file that is a link is replaced, not
    written through)."""
    targets = [output / name for name in names]
    refuse_inputs(targets, inputs)
    inside = output.resolve()
    for folder in sorted({target.parent for target in targets}):
        if not folder.resolve().is_relative_to(inside):
            raise DmcodecError(f"{folder}: leads outside {output} (through a link); dmcodec writes only inside -o; "
                               "remove the link or choose another -o")


def _tokenizer(store: CodeStore, layout: str, n_q: int | None, codebook_offsets: bool | None,
               bpe: str | os.PathLike | None) -> TokenSpec | BpeTokenizer:
    """The layout's spec, or for ``bpe`` the tokenizer in that folder; checked against the store."""
    meta = store.meta
    if (layout == "bpe") != (bpe is not None):
        raise DmcodecError("--layout bpe goes with --bpe DIR (a tokenizer made by `dmcodec bpe`), and --bpe with "
                           "--layout bpe")
    if bpe is not None:
        if codebook_offsets is not None:
            raise DmcodecError("--codebook-offsets / --no-codebook-offsets are for the code layouts: a BPE "
                               "tokenizer has its own vocabulary; leave them out with --layout bpe")
        tokenizer = BpeTokenizer(bpe)
        tokenizer.check_store(meta, str(store.path))
        if n_q not in (None, tokenizer.n_q):
            raise DmcodecError(f"--n-q {n_q}: the tokenizer {bpe} was trained on {tokenizer.n_q} codebooks")
        return tokenizer
    try:
        return TokenSpec.for_store(meta, layout, n_q, codebook_offsets)
    except ValueError as exc:  # the library names its fields: n_q -> --n-q
        raise DmcodecError(f"{store.path}: --layout {layout}: {str(exc).replace('n_q', '--n-q')}") from None


def _row(store: CodeStore, i: int, spec: TokenSpec | BpeTokenizer, labels: Labels) -> Row:
    tokens = spec.encode(store[i])  # reading checks the codes against the codebook
    return Row(i, store.ids[i], tokens, int(store.offsets[i + 1] - store.offsets[i]), labels.of(store.ids[i]))


def _shard_rows(store: CodeStore, chosen: range, spec: TokenSpec | BpeTokenizer, labels: Labels,
                progress: Quiet) -> tuple[list[Row], list[Failure]]:
    """The rows of utterances ``chosen``; one that cannot be read is a failure, the others go on."""
    rows, failed = [], []
    for i in chosen:
        try:
            rows.append(_row(store, i, spec, labels))
            progress.advance(1, float(store.num_samples[i]) / store.meta.sample_rate)
        except DmcodecError as exc:
            failed.append(Failure(store.ids[i], str(store.path), str(exc)))
            progress.advance(1, 0.0, failed=1)
    return rows, failed


def export_store(store_path: str | os.PathLike, output: str | os.PathLike, fmt: str = "hf", layout: str | None = None,
                 n_q: int | None = None, codebook_offsets: bool | None = None,
                 shard_size: int = DEFAULT_SHARD_SIZE, labels: Labels = Labels(), progress: Quiet = Quiet(),
                 overwrite: bool = False, bpe: str | os.PathLike | None = None,
                 inputs: tuple[str | os.PathLike, ...] = ()) -> ExportSummary:
    """Write the store's utterances as ``fmt`` shards of ``layout`` tokens (default: the format's, ``flat`` but
    for lhotse) over its first ``n_q`` codebooks (default: all); ``layout="bpe"`` with the tokenizer ``bpe``.

    No file written is the store or one of ``inputs`` (the labels' manifest), even with ``overwrite``."""
    if fmt not in FORMATS:
        raise DmcodecError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not 1 <= shard_size <= 10_000_000:
        raise DmcodecError(f"--shard-size must be 1..10000000 utterances per shard, got {shard_size}")
    layout = FORMATS[fmt].check_layout(layout)
    FORMATS[fmt].check_available()
    output, started = Path(output), time.monotonic()
    with CodeStore(store_path) as store:
        meta = store.meta
        spec = _tokenizer(store, layout, n_q, codebook_offsets, bpe)
        total_shards = max(1, math.ceil(len(store) / shard_size))
        settings = {"format": fmt, "tokens": spec.to_dict(), "shard_size": shard_size, "shards": total_shards,
                    "store": store_digest(store), "labels": labels.digest()}
        failures_path = output / "failures.tsv"
        _check_targets(output, [*_shard_files(settings), RECORD_NAME, failures_path.name], [store_path, *inputs])
        check_failures_file(failures_path, overwrite)
        done = _previous_shards(output, settings, overwrite)
        summary = ExportSummary(str(output), fmt, len(store), shards=total_shards)
        writer = FORMATS[fmt]
        record = {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "settings": settings,
                  "tokens": spec.to_dict(), "store": str(store_path), "utterances": len(store),
                  "shards_done": sorted(done), "complete": False, "files": _shard_files(settings)}
        write_record(output, RECORD_NAME, record)
        progress.start(len(store), f"export {fmt}")
        try:
            for index in range(total_shards):
                chosen = range(index * shard_size, min((index + 1) * shard_size, len(store)))
                if index in done:
                    summary.skipped += len(chosen)
                    progress.advance(len(chosen), float(store.num_samples[chosen.start:chosen.stop].sum())
                                     / meta.sample_rate)
                    continue
                rows, failed = _shard_rows(store, chosen, spec, labels, progress)
                writer.write([output / name for name in writer.files(index, total_shards)], rows, spec)
                summary.exported += len(rows)
                summary.tokens += sum(r.tokens.size for r in rows)
                summary.failures += failed
                if not failed:
                    done.add(index)
                    record["shards_done"] = sorted(done)
                    write_record(output, RECORD_NAME, record)
        finally:
            progress.stop()
    record["complete"] = len(done) == total_shards
    write_record(output, RECORD_NAME, record)
    summary.failures_file = write_failures(failures_path, summary.failures)
    summary.wall_seconds = time.monotonic() - started
    return summary


def read_export_spec(output: str | os.PathLike) -> TokenSpec | BpeTokenizer:
    """The token spec (or BPE tokenizer) of an export folder: its ``decode(tokens)`` gives the codes back."""
    record = read_record(Path(output), RECORD_NAME, EXPORT_FORMAT)
    if record is None:
        raise DmcodecError(f"{output}: no {RECORD_NAME}; not a dmcodec export")
    tokens = record.get("tokens")
    try:
        if isinstance(tokens, dict) and tokens.get("format") == BPE_FORMAT:
            return BpeTokenizer(tokens["tokenizer"])
        return TokenSpec.from_dict(tokens)
    except (KeyError, TypeError, ValueError) as exc:
        raise DmcodecError(f"{output}/{RECORD_NAME}: its token spec is damaged ({exc}); export again") from None
