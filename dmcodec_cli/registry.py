"""Where ``--model`` points: a registered name, a local directory or file, or a Hugging Face repo id."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .config import CodecConfig, ConfigFile
from .errors import DmcodecError
from .model import DMCodec

MODELS_DIR = Path(__file__).parent / "models"
#: Registered names -> release directories shipped inside the package.
REGISTERED: dict[str, Path] = {p.name: p for p in sorted(MODELS_DIR.glob("*")) if (p / "config.json").is_file()}
#: The model used when ``--model`` is not given (None until one is bundled).
DEFAULT_MODEL: str | None = "dmcodec-mini" if "dmcodec-mini" in REGISTERED else None
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.pt", "*.pth"]))
    except LocalEntryNotFoundError:
        raise DmcodecError(f"{repo_id}: not in the local Hugging Face cache and the hub cannot be reached "
                           "(offline?); download it where there is a network, or pass a local path") from None
    except RepositoryNotFoundError:
        raise DmcodecError(f"{repo_id}: no such model on the Hugging Face hub (or it is private)") from None
    except (HfHubHTTPError, OSError) as exc:
        raise DmcodecError(f"{repo_id}: download from the Hugging Face hub failed ({exc})") from None
    except ValueError as exc:  # HFValidationError: a name the hub does not allow ("a/b..c", over 96 characters)
        raise DmcodecError(f"{repo_id}: no such model file or directory, and not a valid Hugging Face id "
                           f"({str(exc).splitlines()[0][:160]})") from None


def _checkpoint_in(directory: Path) -> Path:
    """A hub snapshot holds either our release files or a single official checkpoint."""
    if (directory / "model.safetensors").is_file():
        return directory
    found = sorted(directory.glob("*.safetensors")) + sorted(directory.glob("*.pt")) + sorted(directory.glob("*.pth"))
    if not found:
        raise DmcodecError(f"{directory}: no model weights (.safetensors / .pt) found")
    return found[0]


def resolve_model_path(spec: str | None) -> Path:
    """The local path behind a ``--model`` value (downloading a hub id into the cache if needed)."""
    if spec is None:
        if DEFAULT_MODEL is None:
            raise DmcodecError("no model given and no default model is bundled; pass --model "
                               "(a model directory, a .pt / .safetensors checkpoint or a Hugging Face id)")
        spec = DEFAULT_MODEL
    if spec in REGISTERED:
        return REGISTERED[spec]
    path = Path(spec).expanduser()
    if path.exists():
        return _checkpoint_in(path) if path.is_dir() and not (path / "config.json").is_file() else path
    if _HUB_ID.match(spec) and not spec.startswith((".", "/")):
        return _checkpoint_in(_from_hub(spec))
    names = ", ".join(REGISTERED) or "none bundled"
    raise DmcodecError(f"{spec}: no such model file or directory, and not a registered name ({names}) "
                       "or a Hugging Face id (owner/name)")


def load_model(spec: str | None = None, device: str | torch.device = "cpu",
               config: ConfigFile | CodecConfig | None = None, for_inference: bool = True) -> DMCodec:
    """Load a model by ``--model`` value, in eval mode on ``device``, weight norm folded for inference."""
    model = load_checkpoint(resolve_model_path(spec), config).eval().to(device)
    return model.fold_weight_norm() if for_inference else model


def list_models() -> list[dict]:
    """The registered models: name, fingerprint, rate, frame rate, codebooks, whether it is the default and
    its folder. Each is loaded (on the CPU) so that the fingerprint is the one its codes will carry."""
    found = []
    for name, folder in REGISTERED.items():
        model = load_model(name, for_inference=False)
        config = model.config
        found.append({"name": name, "fingerprint": model.fingerprint, "sample_rate": config.sample_rate,
                      "frame_rate": config.frame_rate, "n_q": config.n_q, "codebook_size": config.codebook_size,
                      "default": name == DEFAULT_MODEL, "path": str(folder)})
    return found
