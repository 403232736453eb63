"""Loading and saving model weights: official state dicts, trainer packages and our release format.

Release format: a directory with ``config.json`` (the model's ``ConfigFile``: its architecture and the training
keys it carries) and ``model.safetensors`` whose metadata holds ``format = "dmcodec-model"``,
``format_version`` and ``fingerprint`` (sha256 of the weights).
Nothing here ever runs a pickle: ``torch.load(weights_only=True)`` or safetensors only.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from .atomic import atomic_path
from .config import CodecConfig, ConfigFile
from .errors import DmcodecError
from .model import DMCodec, fingerprint

RELEASE_FORMAT = "dmcodec-model"
RELEASE_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_PARAMETRIZED = re.compile(r"\.parametrizations\.weight\.original([01])$")


# -- reading state dicts --------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _torch_load(path: Path) -> object:
    try:
        with warnings.catch_warnings():  # a pickle protocol torch did not write is refused below, not warned about
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DmcodecError(f"{path}: refused: the file holds Python objects other than tensors and loading "
                           f"it would run code ({_first_line(exc)}); only plain state dicts are accepted") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, SafetensorError) as exc:
        raise DmcodecError(f"{path}: not a readable PyTorch checkpoint, truncated or damaged "
                           f"({_first_line(exc)})") from None


def _normalise_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Accept the modern parametrized weight-norm names and a DistributedDataParallel ``module.`` prefix."""
    out = {}
    for name, tensor in state.items():
        name = name.removeprefix("module.")
        name = _PARAMETRIZED.sub(lambda m: ".weight_g" if m.group(1) == "0" else ".weight_v", name)
        out[name] = tensor
    return out


def _file_kind(path: Path) -> str:
    """What the first bytes say: ``zip`` (torch.save), ``pickle`` (torch's legacy format), ``safetensors``
    (an 8-byte header length, then JSON) or ``?`` followed by the first bytes in hex."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as exc:
        raise DmcodecError(f"{path}: cannot read the checkpoint ({exc.strerror or exc})") from None
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x80"):
        return "pickle"
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    return "? " + (head[:8].hex(" ") or "empty")


def _safetensors_load(path: Path) -> dict[str, Tensor]:
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DmcodecError(f"{path}: not a readable safetensors file, truncated or damaged "
                           f"({_first_line(exc)})") from None


def _check_finite(state: dict[str, Tensor], path: Path) -> None:
    """A tensor holding NaN / inf makes silent garbage (a NaN codebook gives all-zero codes): refuse it."""
    bad = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise DmcodecError(f"{path}: tensor {bad[0]}{more} holds NaN or inf values; the checkpoint is damaged "
                           "(or its training diverged): use another checkpoint")


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a ``.safetensors`` file or a torch checkpoint: a bare state dict or ``{"generator": state_dict, ...}``.

    The kind is told by the file's first bytes, not its name; every tensor must be finite."""
    path = Path(path)
    if not path.is_file():
        raise DmcodecError(f"{path}: no such checkpoint file")
    kind = _file_kind(path)
    state: object
    if kind == "safetensors":
        state = _safetensors_load(path)
    elif kind in ("zip", "pickle"):
        state = _torch_load(path)
        if isinstance(state, dict) and isinstance(state.get("generator"), dict):
            state = state["generator"]
    else:
        raise DmcodecError(f"{path}: neither a PyTorch checkpoint (zip) nor a safetensors file (first bytes: "
                           f"{kind[2:]}); pass a .pt / .safetensors checkpoint or a model directory")
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise DmcodecError(f"{path}: not a DM-Codec checkpoint (expected a mapping of names to tensors)")
    if not all(isinstance(k, str) for k in state):
        raise DmcodecError(f"{path}: not a DM-Codec checkpoint (tensor names must be strings)")
    _check_finite(state, path)
    return _normalise_keys({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


# -- config inference -----------------------------------------------------------------------------

def _shape(state: dict[str, Tensor], key: str, path: str) -> tuple[int, ...]:
    if key not in state:
        raise DmcodecError(f"{path}: not a complete DM-Codec checkpoint (missing key {key})")
    return tuple(state[key].shape)


def _indices(state: dict[str, Tensor], pattern: str) -> list[int]:
    """The sorted distinct numbers captured by ``pattern`` (group 1) over every key."""
    return sorted({int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))})


def _size(state: dict[str, Tensor], prefix: str, names: tuple[str, ...], path: str) -> int:
    """Dimension 0 of the first of ``prefix + name`` present (several tensors tell the same size)."""
    for name in names:
        if prefix + name in state and state[prefix + name].dim() >= 1:
            return int(state[prefix + name].shape[0])
    return _shape(state, prefix + names[0], path)[0]


def infer_config(state: dict[str, Tensor], path: str = "checkpoint") -> CodecConfig:
    """Rebuild the architecture from tensor shapes.

    Counts (layers, codebooks) are read from every key of a module, so that a checkpoint missing one
    key infers the right architecture and the loader then names that key as missing.
    ``dilation_base`` leaves no trace in the shapes; it keeps the default (2), which only matters for
    models with more than one residual layer per stage.
    """
    try:
        return _infer_config(state, path)
    except (IndexError, ValueError, TypeError) as exc:
        raise DmcodecError(f"{path}: not a DM-Codec checkpoint (tensor shapes do not fit the architecture: "
                           f"{_first_line(exc)})") from None


def _infer_config(state: dict[str, Tensor], path: str) -> CodecConfig:
    conv = ("weight_v", "weight_g", "bias")
    conv_index = _indices(state, r"encoder\.model\.(\d+)\.conv\.conv\.(?:weight_v|weight_g|bias)")
    if len(conv_index) < 2:
        raise DmcodecError(f"{path}: not a DM-Codec checkpoint (no SEANet encoder convolutions found)")
    first, *down, last = conv_index
    n_filters = _size(state, f"encoder.model.{first}.conv.conv.", conv, path)
    dimension = _size(state, f"encoder.model.{last}.conv.conv.", conv, path)
    strides = [_shape(state, f"encoder.model.{i}.conv.conv.weight_v", path)[2] // 2 for i in reversed(down)]
    res_blocks = _indices(state, r"encoder\.model\.(\d+)\.(?:block|shortcut)\..*")
    n_residual = len([i for i in res_blocks if down and i < down[0]])
    kernels = [tuple(state[k].shape)[2] for i in res_blocks
               if (k := f"encoder.model.{i}.block.1.conv.conv.weight_v") in state]
    lstm = _indices(state, r"encoder\.model\.\d+\.lstm\.(?:weight|bias)_(?:ih|hh)_l(\d+)(?:_reverse)?")
    codebooks = _indices(state, r"quantizer\.vq\.layers\.(\d+)\..*")
    if not lstm or not codebooks:
        raise DmcodecError(f"{path}: not a DM-Codec checkpoint (no encoder LSTM or no codebooks found)")
    codebook_size = _size(state, f"quantizer.vq.layers.{codebooks[0]}._codebook.",
                          ("embed", "embed_avg", "cluster_size"), path)
    has_transform = "transform.weight" in state or "transform.bias" in state
    semantic = _size(state, "transform.", ("weight", "bias"), path) if has_transform else dimension
    try:
        return CodecConfig(
            n_filters=n_filters, dimension=dimension, semantic_dimension=semantic, strides=tuple(strides),
            n_residual_layers=n_residual, residual_kernel_size=kernels[0] if kernels else 3,
            lstm_layers=max(lstm) + 1, bidirectional=any(k.endswith("_reverse") for k in state),
            codebook_size=codebook_size, n_q=max(codebooks) + 1,
        )
    except DmcodecError as exc:
        raise DmcodecError(f"{path}: the architecture read from its tensor shapes is refused: {exc}") from None


# -- building models ------------------------------------------------------------------------------

def _first_few(names: list[str], count: int = 3) -> str:
    more = f", and {len(names) - count} more" if len(names) > count else ""
    return ", ".join(names[:count]) + more


def model_from_state_dict(state: dict[str, Tensor], config: ConfigFile | CodecConfig | None = None,
                          path: str = "checkpoint") -> DMCodec:
    """A model with these weights (strict: every key present, no extra key, every shape equal).

    ``config``: its config file (architecture and training keys), or only the architecture (the official
    training keys), or None: the architecture inferred from the tensor shapes."""
    if not isinstance(config, ConfigFile):
        config = ConfigFile(config or infer_config(state, path))
    model = DMCodec(config.codec, config.training)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_first_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_first_few(unexpected)})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)}, "
                         f"model {tuple(expected[k].shape)})")
        raise DmcodecError(f"{path}: checkpoint does not match the model config: {'; '.join(parts)}")
    return model.load_weights(state)


def load_checkpoint(path: str | os.PathLike, config: ConfigFile | CodecConfig | None = None) -> DMCodec:
    """A model from a release directory or a ``.pt`` / ``.safetensors`` file.

    For a file, the config is ``config`` if given, else a ``config.json`` beside it, else inferred.
    """
    path = Path(path)
    if path.is_dir():
        return load_release(path)
    if config is None and (path.parent / CONFIG_NAME).is_file():
        config = ConfigFile.from_json(path.parent / CONFIG_NAME)
    return model_from_state_dict(read_state_dict(path), config, str(path))


def _training_buffer(name: str) -> bool:
    return name.endswith(("._codebook.cluster_size", "._codebook.embed_avg"))


def restore_training_buffers(state: dict[str, Tensor], usage: float = 1.0) -> dict[str, Tensor]:
    """Fill the EMA statistics an inference-only release leaves out, consistently with its codebooks.

    Every code counts as equally used (so fine-tuning does not take any for dead at its first step) and
    ``embed_avg = embed * usage``, so the EMA restarts from ``embed``.
    """
    state = dict(state)
    for key in [k for k in state if k.endswith("._codebook.embed")]:
        prefix, embed = key[: -len("embed")], state[key]
        state.setdefault(prefix + "cluster_size", torch.full((embed.shape[0],), usage, dtype=embed.dtype))
        state.setdefault(prefix + "embed_avg", embed * usage)
    return state


def load_release(directory: str | os.PathLike) -> DMCodec:
    """A model from our release directory (``config.json`` + ``model.safetensors``)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for needed in (config_path, weights_path):
        if not needed.is_file():
            raise DmcodecError(f"{directory}: not a dmcodec model directory (no {needed.name})")
    try:
        with safe_open(weights_path, "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DmcodecError(f"{weights_path}: not a readable safetensors file, truncated or damaged "
                           f"({_first_line(exc)})") from None
    version_text = str(metadata.get("format_version", RELEASE_FORMAT_VERSION))
    if not version_text.isdigit():
        raise DmcodecError(f"{weights_path}: format_version {version_text!r} in its metadata is not a number; "
                           "the model directory is damaged: convert the checkpoint again")
    version = int(version_text)
    if version > RELEASE_FORMAT_VERSION:
        raise DmcodecError(f"{directory}: model format version {version} is newer than this dmcodec "
                           f"understands ({RELEASE_FORMAT_VERSION}); upgrade dmcodec")
    config = ConfigFile.from_json(config_path)  # the small file first: a bad config is refused before any weight
    state = read_state_dict(weights_path)
    if metadata.get("contents") == "inference":
        state = restore_training_buffers(state)
    return model_from_state_dict(state, config, str(directory))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_release(model: DMCodec, directory: str | os.PathLike, dtype: torch.dtype = torch.float32,
                 inference_only: bool = False) -> str:
    """Write ``model`` as a release directory (``config.json`` and ``model.safetensors``, each atomically; nothing
    else in the folder is touched) and return its fingerprint.

    ``dtype=torch.float16`` halves the file; ``inference_only`` leaves out the codebooks' EMA statistics
    (``cluster_size``, ``embed_avg``: half of the codebook bytes), which only training reads. The
    fingerprint is that of the weights as a loader will see them.
    """
    if model.folded:
        raise ValueError("cannot save a model whose weight norm was folded for inference")
    directory = Path(directory)
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items() if not (inference_only and _training_buffer(k))}
    print_ = fingerprint(restore_training_buffers(state) if inference_only else state)
    metadata = {"format": RELEASE_FORMAT, "format_version": str(RELEASE_FORMAT_VERSION), "fingerprint": print_,
                "contents": "inference" if inference_only else "full"}
    # The folder is filled, never wiped: only these two files are written (each to a temporary name, both
    # renamed at the end), whatever else the folder holds.
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / WEIGHTS_NAME) as weights, atomic_path(directory / CONFIG_NAME) as config:
        save_file(state, weights, metadata=metadata)
        os.chmod(weights, 0o666 & ~_umask())  # safetensors creates its file 0600; a release is meant to be shared
        config.write_text(model.config_file.to_json())
    return print_
