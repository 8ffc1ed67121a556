"""Device choice and model/tokenizer loading with a clear error when a model is not obtainable."""
from __future__ import annotations

import os

from .errors import DilmbenchError

# the quick preset's encoder and learner (6 layers, 384 wide: a CPU fine-tunes it in seconds per step)
QUICK_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


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
        AutoConfig.from_pretrained(model_id)
    except Exception as exc:
        raise _not_found(model_id, exc) from exc


def load_tokenizer(model_id: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_id)
    except Exception as exc:
        raise _not_found(model_id, exc) from exc


def load_pretrained(auto_cls, model_id: str, **kwargs):
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head" warnings are expected here
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per run drowns the grid's own progress bar
    try:
        return auto_cls.from_pretrained(model_id, **kwargs)
    except Exception as exc:
        raise _not_found(model_id, exc) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
