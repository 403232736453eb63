"""Loading and saving model weights: official state dicts, trainer packages and our release format.

Release format: a directory with ``config.json`` (the codec config) and ``model.safetensors`` whose
metadata holds ``format = "dmcodec-model"``, ``format_version`` and ``fingerprint`` (sha256 of the weights).
Nothing here ever runs a pickle: ``torch.load(weights_only=True)`` or safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import Tensor

from .config import CodecConfig
from .errors import DmcodecError
from .model import DMCodec

RELEASE_FORMAT = "dmcodec-model"
RELEASE_FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_PARAMETRIZED = re.compile(r"\.parametrizations\.weight\.original([01])$")


def fingerprint(state_dict: dict[str, Tensor]) -> str:
    """sha256 over every tensor's name, shape and float32 bytes, in name order: equal for equal weights
    whatever the file form (.pt, .safetensors, release directory, fp16 storage once loaded)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


# -- reading state dicts --------------------------------------------------------------------------

def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DmcodecError(f"{path}: refused: the file holds Python objects other than tensors and loading "
                           f"it would run code ({_first_line(exc)}); only plain state dicts are accepted") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise DmcodecError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)})") from None


def _normalise_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Accept the modern parametrized weight-norm names and a DistributedDataParallel ``module.`` prefix."""
    out = {}
    for name, tensor in state.items():
        name = name.removeprefix("module.")
        name = _PARAMETRIZED.sub(lambda m: ".weight_g" if m.group(1) == "0" else ".weight_v", name)
        out[name] = tensor
    return out


def read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    """Read a ``.safetensors`` file or a torch checkpoint: a bare state dict or ``{"generator": state_dict, ...}``."""
    path = Path(path)
    if not path.is_file():
        raise DmcodecError(f"{path}: no such checkpoint file")
    if path.suffix == ".safetensors":
        try:
            state = load_file(path)
        except (SafetensorError, OSError, ValueError) as exc:
            raise DmcodecError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    else:
        state = _torch_load(path)
        if isinstance(state, dict) and isinstance(state.get("generator"), dict):
            state = state["generator"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise DmcodecError(f"{path}: not a DM-Codec checkpoint (expected a mapping of names to tensors)")
    return _normalise_keys({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


# -- config inference -----------------------------------------------------------------------------

def _shape(state: dict[str, Tensor], key: str, path: str) -> tuple[int, ...]:
    if key not in state:
        raise DmcodecError(f"{path}: not a DM-Codec checkpoint (missing {key})")
    return tuple(state[key].shape)


def infer_config(state: dict[str, Tensor], path: str = "checkpoint") -> CodecConfig:
    """Rebuild the architecture part of the config from tensor shapes (training keys keep defaults).

    ``dilation_base`` leaves no trace in the shapes; it keeps the default (2), which only matters for
    models with more than one residual layer per stage.
    """
    conv_index = sorted({int(m.group(1)) for k in state
                         if (m := re.fullmatch(r"encoder\.model\.(\d+)\.conv\.conv\.weight_v", k))})
    if len(conv_index) < 2:
        raise DmcodecError(f"{path}: not a DM-Codec checkpoint (no SEANet encoder convolutions found)")
    first, *down, last = conv_index
    n_filters = _shape(state, f"encoder.model.{first}.conv.conv.weight_v", path)[0]
    dimension = _shape(state, f"encoder.model.{last}.conv.conv.weight_v", path)[0]
    strides = [_shape(state, f"encoder.model.{i}.conv.conv.weight_v", path)[2] // 2 for i in reversed(down)]
    res_blocks = {int(m.group(1)) for k in state if (m := re.fullmatch(r"encoder\.model\.(\d+)\.block\.1\..*weight_v", k))}
    n_residual = len([i for i in res_blocks if down and i < down[0]])
    res_key = f"encoder.model.{min(res_blocks)}.block.1.conv.conv.weight_v" if res_blocks else None
    lstm = [k for k in state if re.fullmatch(r"encoder\.model\.\d+\.lstm\.weight_ih_l\d+", k)]
    codebooks = [k for k in state if re.fullmatch(r"quantizer\.vq\.layers\.\d+\._codebook\.embed", k)]
    if not lstm or not codebooks:
        raise DmcodecError(f"{path}: not a DM-Codec checkpoint (no encoder LSTM or no codebooks found)")
    codebook_size = _shape(state, "quantizer.vq.layers.0._codebook.embed", path)[0]
    semantic = _shape(state, "transform.weight", path)[0] if "transform.weight" in state else dimension
    return CodecConfig(
        n_filters=n_filters, dimension=dimension, semantic_dimension=semantic, strides=tuple(strides),
        n_residual_layers=n_residual, residual_kernel_size=_shape(state, res_key, path)[2] if res_key else 3,
        lstm_layers=len(lstm), bidirectional=any(k.endswith("_reverse") for k in state),
        codebook_size=codebook_size, n_q=len(codebooks),
    )


# -- building models ------------------------------------------------------------------------------

def model_from_state_dict(state: dict[str, Tensor], config: CodecConfig | None = None,
                          path: str = "checkpoint") -> DMCodec:
    """A model with these weights (strict: every key present, no extra key, every shape equal)."""
    config = config or infer_config(state, path)
    model = DMCodec(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)}, "
                         f"model {tuple(expected[k].shape)})")
        raise DmcodecError(f"{path}: checkpoint does not match the model config: {'; '.join(parts)}")
    model.load_state_dict(state)
    model.fingerprint = fingerprint(state)
    return model


def load_checkpoint(path: str | os.PathLike, config: CodecConfig | None = None) -> DMCodec:
    """A model from a release directory or a ``.pt`` / ``.safetensors`` file.

    For a file, the config is ``config`` if given, else a ``config.json`` beside it, else inferred.
    """
    path = Path(path)
    if path.is_dir():
        return load_release(path)
    if config is None and (path.parent / CONFIG_NAME).is_file():
        config = CodecConfig.from_json(path.parent / CONFIG_NAME)
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
    except (SafetensorError, OSError) as exc:
        raise DmcodecError(f"{weights_path}: not a readable safetensors file ({_first_line(exc)})") from None
    version = int(metadata.get("format_version", RELEASE_FORMAT_VERSION))
    if version > RELEASE_FORMAT_VERSION:
        raise DmcodecError(f"{directory}: model format version {version} is newer than this dmcodec "
                           f"understands ({RELEASE_FORMAT_VERSION}); upgrade dmcodec")
    state = read_state_dict(weights_path)
    if metadata.get("contents") == "inference":
        state = restore_training_buffers(state)
    return model_from_state_dict(state, CodecConfig.from_json(config_path), str(directory))


def save_release(model: DMCodec, directory: str | os.PathLike, dtype: torch.dtype = torch.float32,
                 inference_only: bool = False) -> str:
    """Write ``model`` as a release directory (atomically) and return its fingerprint.

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
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a model directory is for others to read
    try:
        save_file(state, tmp / WEIGHTS_NAME, metadata=metadata)
        (tmp / CONFIG_NAME).write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return print_
