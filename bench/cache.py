"""Where reusable artefacts (embeddings, generator checkpoints, pools) are kept across runs."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("DILMBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dilmbench")
    return Path(root)


def stable_hash(obj, n: int = 16) -> str:
    """Hash of a JSON-able object, independent of key order."""
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:n]
