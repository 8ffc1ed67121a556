"""Device choice and model/tokenizer loading with a clear error when a model is not obtainable."""
from __future__ import annotations

import os

from .errors import DilmbenchError

# the quick preset's encoder and learner (6 layers, 384 wide: a CPU fine-tunes it in seconds per step)
QUICK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


# A documented mapping from model ids to local folders: $DILMBENCH_MODEL_MAP names a JSON file {"bert-base-uncased":
# "/path/to/folder", ...}. Every load (tokenizer, weights, config, vLLM) and every recorded revision goes through
# resolve_model, so a configuration that names hub ids runs unchanged on local stand-ins (the paper preset's rehearsal,
# a mirror); a result made on a stand-in records the folder's 'local:' revision, never the hub's snapshot.
MODEL_MAP_ENV = "DILMBENCH_MODEL_MAP"


def model_map() -> dict[str, str]:
    """$DILMBENCH_MODEL_MAP's {model id: local folder}, relative folders taken from the file's own folder."""
    import json
    from pathlib import Path

    path = os.environ.get(MODEL_MAP_ENV)
    if not path:
        return {}
    file = Path(path)
    try:
        data = json.loads(file.read_text())
    except FileNotFoundError:
        raise DilmbenchError(f"${MODEL_MAP_ENV} names '{path}', which does not exist") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DilmbenchError(f"${MODEL_MAP_ENV} file '{path}' is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise DilmbenchError(f"${MODEL_MAP_ENV} file '{path}' must hold one mapping of model id -> local folder")
    out = {}
    for model_id, folder in data.items():
        target = Path(folder) if Path(folder).is_absolute() else file.parent / folder
        if not target.is_dir():
            raise DilmbenchError(f"${MODEL_MAP_ENV} maps '{model_id}' to '{target}', which is not a folder")
        out[model_id] = str(target)
    return out


def resolve_model(model_id: str) -> str:
    """The folder $DILMBENCH_MODEL_MAP maps the id to, else the id itself."""
    return model_map().get(model_id, model_id)


def pick_device(requested: str | None = None) -> str:
    import torch

    if requested in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise DilmbenchError(f"device '{requested}' requested but CUDA is not available")
    return requested


def _not_found(model_id: str, exc: Exception) -> DilmbenchError:
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    if offline and not os.path.isdir(model_id) and isinstance(exc, OSError):
        how = ("it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; fetch it where the hub is "
               f"reachable (`hf download {model_id}`) and bring that cache here (HF_HOME), or unset HF_HUB_OFFLINE")
    else:
        how = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return DilmbenchError(f"cannot load model '{model_id}': {how}")


def check_model_available(model_id: str) -> None:
    """Fail fast (before anything is written) when a model's config cannot be had."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(resolve_model(model_id))
    except Exception as exc:
        raise _not_found(model_id, exc) from exc


def load_tokenizer(model_id: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolve_model(model_id))
    except Exception as exc:
        raise _not_found(model_id, exc) from exc


def load_pretrained(auto_cls, model_id: str, **kwargs):
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head" warnings are expected here
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per run drowns the grid's own progress bar
    try:
        return auto_cls.from_pretrained(resolve_model(model_id), **kwargs)
    except Exception as exc:
        raise _not_found(model_id, exc) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
