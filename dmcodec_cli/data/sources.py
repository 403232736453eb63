"""Where utterances come from: local folders, TSV / CSV / JSONL manifests, Hugging Face datasets.

Every source yields :class:`Utterance` objects; audio is read only when ``load`` is called, as mono float32
at the requested rate (mixed down by averaging, resampled with soxr).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from ..audio import AUDIO_EXTENSIONS, load_audio, resample, validate_samples
from ..errors import DmcodecError
from ..walk import has_extension, printable, walk_files

PATH_COLUMNS = ("path", "file", "audio", "audio_path", "wav", "filename")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "spk", "client_id")
TEXT_COLUMNS = ("text", "transcript", "transcription", "sentence", "normalized_text")
METADATA_FILES = ("manifest.tsv", "transcripts.tsv", "metadata.tsv")


@dataclass(frozen=True)
class Utterance:
    """One source recording. ``id`` never contains '/'; ``load(sample_rate) -> [L] float32`` reads the audio."""

    id: str
    source: str
    speaker: str | None
    text: str | None
    load: Callable[[int], np.ndarray]


def utterance_id(relative: str, backslash_separates: bool = True) -> str:
    """An id from a relative path: the extension dropped, path separators turned into '__' (a backslash is
    one too unless ``backslash_separates`` is False: a walked name's ``\\xNN`` escapes stay as they are)."""
    stem = relative.rsplit(".", 1)[0] if Path(relative).suffix.lower() in AUDIO_EXTENSIONS else relative
    stem = stem.replace("\\", "/") if backslash_separates else stem
    return stem.replace("/", "__")


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _pick(row: dict, columns: tuple[str, ...]) -> str | None:
    for column in columns:
        if column in row and _clean(row[column]) is not None:
            return _clean(row[column])
    return None


def _file_loader(path: Path) -> Callable[[int], np.ndarray]:
    return lambda sample_rate: load_audio(path, sample_rate).samples


def _read_table(path: Path) -> list[dict]:
    """Rows of a TSV / CSV (header line) or JSONL file."""
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            if not all(isinstance(row, dict) for row in rows):
                raise DmcodecError(f"{path}: each line must be a JSON object")
            return rows
        delimiter = "," if path.suffix.lower() == ".csv" else "\t"
        with open(path, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else 0))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DmcodecError(f"{path}: cannot read the manifest ({exc})") from None


def folder_metadata(folder: Path) -> dict[str, dict]:
    """Speaker / text per relative file path, from the manifest.tsv / transcripts.tsv files of a folder."""
    found: dict[str, dict] = {}
    for name in METADATA_FILES:
        table = folder / name
        if not table.is_file():
            continue
        for row in _read_table(table):
            key = _pick(row, PATH_COLUMNS)
            if key is None:
                continue
            entry = found.setdefault(key, {})
            for field, columns in (("speaker", SPEAKER_COLUMNS), ("text", TEXT_COLUMNS)):
                entry[field] = entry.get(field) or _pick(row, columns)
    return found


def folder_source(folder: Path) -> Iterator[Utterance]:
    """Every audio file under ``folder`` (walked by the policy of ``walk.walk_files``: links followed, every
    real file once, hidden names skipped, sorted); speaker and text from its metadata files.

    A name that is not valid UTF-8 gets an id and a ``source`` with its bytes escaped (``\\xff``); its
    audio is still read from the real path.
    """
    metadata = folder_metadata(folder)
    for found in walk_files(folder, has_extension(AUDIO_EXTENSIONS)):
        meta = metadata.get(found.relative, {})
        source = printable(found.path.resolve())
        uid = utterance_id(found.relative, backslash_separates=False)
        yield Utterance(uid, source, meta.get("speaker"), meta.get("text"),
                        _file_loader(found.path))


def manifest_source(manifest: Path) -> Iterator[Utterance]:
    """The rows of a TSV / CSV / JSONL manifest: a path column (path, file, audio, ...) relative to the
    manifest's folder or absolute, optional speaker and text columns, optional id column."""
    rows = _read_table(manifest)
    for number, row in enumerate(rows, 1):
        relative = _pick(row, PATH_COLUMNS)
        if relative is None:
            raise DmcodecError(f"{manifest}: row {number} has no audio path; name the column one of "
                               f"{', '.join(PATH_COLUMNS)}")
        path = Path(relative) if Path(relative).is_absolute() else manifest.parent / relative
        uid = _clean(row.get("id")) or utterance_id(relative)
        yield Utterance(uid.replace("/", "__"), str(path.resolve()), _pick(row, SPEAKER_COLUMNS),
                        _pick(row, TEXT_COLUMNS), _file_loader(path))


def local_source(spec: str | Path) -> Iterator[Utterance]:
    """A folder or a manifest file given on the command line."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return folder_source(path)
    if path.is_file() and path.suffix.lower() in (".tsv", ".csv", ".jsonl", ".json"):
        return manifest_source(path)
    if path.is_file():
        raise DmcodecError(f"{path}: not a folder or a manifest (.tsv, .csv, .jsonl); give a folder of audio "
                           "files or a manifest with a path column")
    raise DmcodecError(f"{path}: no such folder or manifest")


# -- Hugging Face datasets -------------------------------------------------------------------------------------

def _import_datasets():
    try:
        import datasets
    except ImportError:
        raise DmcodecError("--hf-dataset needs the `datasets` library: pip install 'dmcodec[data]'") from None
    return datasets


def _open_hf(name: str, split: str, config: str | None):
    datasets = _import_datasets()
    local = Path(name).expanduser()
    try:
        if local.is_dir() and ((local / "dataset_info.json").is_file() or (local / "dataset_dict.json").is_file()):
            data = datasets.load_from_disk(str(local))
            if isinstance(data, datasets.DatasetDict):
                if split not in data:
                    raise DmcodecError(f"{name}: no split {split!r}; it has {', '.join(data)}")
                data = data[split]
            return data
        return datasets.load_dataset(name, config, split=split)
    except DmcodecError:
        raise
    except Exception as exc:  # the datasets library raises many unrelated types for a missing dataset
        raise DmcodecError(f"{name}: cannot load the dataset split {split!r} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}); check the name, or give a local "
                           "dataset saved with save_to_disk") from None


def _decode_hf_audio(value: object, where: str, sample_rate: int) -> np.ndarray:
    """An audio cell ({array, sampling_rate} or {bytes, path}) -> [L] float32 mono at ``sample_rate``."""
    if isinstance(value, dict) and value.get("array") is not None:
        data, rate = np.asarray(value["array"], dtype=np.float32), int(value["sampling_rate"])
    elif isinstance(value, dict) and (value.get("bytes") or value.get("path")):
        try:
            data, rate = sf.read(io.BytesIO(value["bytes"]) if value.get("bytes") else value["path"],
                                 dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise DmcodecError(f"{where}: not readable audio ({exc})") from None
    else:
        raise DmcodecError(f"{where}: the audio column holds no array, bytes or path")
    if data.ndim == 2:  # [channels, L] or [L, channels]: the short axis holds the channels
        data = data.mean(axis=int(np.argmin(data.shape)))
    validate_samples(data, where)
    return np.ascontiguousarray(resample(data, rate, sample_rate), dtype=np.float32)


def _hf_loader(data, index: int, audio_column: str, where: str) -> Callable[[int], np.ndarray]:
    """Reads the row's audio only when called (a dataset's audio does not fit in memory)."""
    return lambda sample_rate: _decode_hf_audio(data[index][audio_column], where, sample_rate)


def hf_source(name: str, split: str, config: str | None = None, audio_column: str = "audio") -> Iterator[Utterance]:
    """Rows of a Hugging Face dataset split (hub name or a local save_to_disk folder). Audio is read with
    soundfile from the stored bytes (the datasets decoder is not used)."""
    datasets = _import_datasets()
    data = _open_hf(name, split, config)
    if audio_column not in data.column_names:
        raise DmcodecError(f"{name}: no audio column {audio_column!r}; columns are {', '.join(data.column_names)}")
    if isinstance(data.features.get(audio_column), datasets.Audio):
        data = data.cast_column(audio_column, datasets.Audio(decode=False))
    metadata = data.remove_columns([audio_column])
    rows = iter(metadata) if metadata.column_names else ({} for _ in range(len(data)))  # no column: no rows
    for index, row in enumerate(rows):
        where = f"{name}[{split}][{index}]"
        uid = _clean(row.get("id")) or f"{split}-{index:08d}"
        yield Utterance(uid.replace("/", "__"), f"hf:{name}:{split}:{index}", _pick(row, SPEAKER_COLUMNS),
                        _pick(row, TEXT_COLUMNS), _hf_loader(data, index, audio_column, where))
