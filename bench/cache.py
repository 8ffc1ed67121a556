"""Where reusable artefacts (embeddings, generator checkpoints, pools) are kept across runs."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("DILMBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "dilmbench")
    return Path(root)


def stable_hash(obj, n: int = 16) -> str:
    """Hash of a JSON-able object, independent of key order."""
    blob = json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:n]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so that a killed process leaves either the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared like any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def first_difference(want, got, said: tuple[str, str], where: str = "") -> str:
    """The first place two run identities differ, as 'path: <said[0]> X, <said[1]> Y' (validate and the runner's
    refusal say what differs with it)."""
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got), key=str):
            if k == "set":  # the set's hash follows from set_identity, which is compared itself
                continue
            if k not in got or k not in want or stable_hash(want[k]) != stable_hash(got[k]):
                if k in got and k in want:
                    return first_difference(want[k], got[k], said, f"{where}.{k}" if where else str(k))
                gives = lambda d, who: f"{who} {d[k]!r}" if k in d else f"{who} nothing"  # noqa: E731
                return f"{where + '.' if where else ''}{k}: {gives(want, said[0])}, {gives(got, said[1])}"
    return f"{where}: {said[0]} {want!r}, {said[1]} {got!r}"
