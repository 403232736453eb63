"""Where prep's utterances come from: the audio inputs of ``inputs`` (a folder, whose metadata files give speaker
and text; a manifest; one audio file) and Hugging Face datasets.

Every source gives :class:`Utterance` objects; audio is read only when ``load`` is called, as mono float32
at the requested rate (mixed down by averaging, resampled with soxr). An utterance's id is the input's id
(the one id rule of ``inputs.ids``) in its flat form (``flat_id``: ``/`` -> ``__``), as segment files are
named after it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soundfile as sf

from ..audio import resample, validate_samples
from ..errors import DmcodecError, printable
from ..inputs import Item, flat_id, read_inputs, with_folder_labels
from ..inputs.tables import ID_COLUMN, SPEAKER_COLUMNS, TEXT_COLUMNS, cell, pick


@dataclass(frozen=True)
class Utterance:
    """One source recording. ``id`` never contains '/'; ``load(sample_rate) -> [L] float32`` reads the audio."""

    id: str
    source: str
    speaker: str | None
    text: str | None
    load: Callable[[int], np.ndarray]


def utterance(item: Item) -> Utterance:
    """The utterance of an audio input: its flat id, its file as the source."""
    return Utterance(flat_id(item.id), printable(item.path.resolve()), item.speaker, item.text, item.load)


def local_source(spec: str | Path) -> list[Utterance]:
    """A folder, a manifest or an audio file given on the command line (``inputs.read_inputs``)."""
    path = Path(spec).expanduser()
    items = read_inputs(path)
    if path.is_dir():
        items = with_folder_labels(items, path)
    return [utterance(item) for item in items]


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
        uid = cell(row, ID_COLUMN, where) or f"{split}-{index:08d}"
        yield Utterance(flat_id(uid), f"hf:{name}:{split}:{index}", pick(row, SPEAKER_COLUMNS, where),
                        pick(row, TEXT_COLUMNS, where), _hf_loader(data, index, audio_column, where))
