"""Text sets: what every method returns and every evaluator scores.

On disk a set is JSONL, one example a line with the task's own field names plus ``label`` (and ``weight`` /
``source_index`` when present), so ``datasets.load_dataset("json", data_files=...)`` reads it as a table. Its
provenance (task, method, config, seed, content hash) sits in a sidecar ``<name>.meta.json``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .cache import atomic_write_text  # noqa: F401 (where the suite's writers import it from)
from .errors import DilmbenchError
from .tasks import Task


@dataclass
class TextSet:
    task: str
    text_fields: tuple[str, ...]
    texts: list[tuple[str, ...]]
    labels: list[int]
    weights: list[float] | None = None
    source_indices: list[int] | None = None
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self.texts = [tuple(t) if isinstance(t, (list, tuple)) else (t,) for t in self.texts]
        self.labels = [int(x) for x in self.labels]
        n = len(self.texts)
        for name, col in (("labels", self.labels), ("weights", self.weights), ("source_indices", self.source_indices)):
            if col is not None and len(col) != n:
                raise DilmbenchError(f"text set has {n} texts but {len(col)} {name}")
        if any(len(t) != len(self.text_fields) for t in self.texts):
            raise DilmbenchError(f"every example of a {self.task} text set needs {len(self.text_fields)} text field(s) {self.text_fields}")

    def __len__(self) -> int:
        return len(self.texts)

    def class_counts(self, num_labels: int) -> list[int]:
        counts = [0] * num_labels
        for y in self.labels:
            counts[y] += 1
        return counts

    def rows(self) -> list[dict]:
        out = []
        for i, (t, y) in enumerate(zip(self.texts, self.labels)):
            row = dict(zip(self.text_fields, t))
            row["label"] = y
            if self.weights is not None:
                row["weight"] = float(self.weights[i])
            if self.source_indices is not None:
                row["source_index"] = int(self.source_indices[i])
            out.append(row)
        return out

    def content_hash(self) -> str:
        blob = "\n".join(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in self.rows())
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def validate(self, task: Task) -> "TextSet":
        if tuple(self.text_fields) != tuple(task.text_fields):
            raise DilmbenchError(f"text set fields {self.text_fields} do not match task {task.name} fields {task.text_fields}")
        bad = sorted({y for y in self.labels if not 0 <= y < task.num_labels})
        if bad:
            raise DilmbenchError(f"text set has label(s) {bad} not in task {task.name} labels 0..{task.num_labels - 1}")
        empty = [task.label_names[c] for c, n in enumerate(self.class_counts(task.num_labels)) if n == 0]
        if empty:
            raise DilmbenchError(f"text set for {task.name} has no example of class(es) {empty}")
        if self.weights is not None and any(not (w >= 0) for w in self.weights):
            raise DilmbenchError("text set weights must be non-negative numbers")
        return self


def meta_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name[: -len(".jsonl")] + ".meta.json" if path.name.endswith(".jsonl") else path.name + ".meta.json")


def save_textset(ts: TextSet, path: Path, card: dict | None = None) -> str:
    """The set as JSONL and its sidecar (provenance, content hash and, when given, its card: dilmbench.cards)."""
    path = Path(path)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ts.rows())
    digest = ts.content_hash()
    meta = {"task": ts.task, "text_fields": list(ts.text_fields), "size": len(ts), "content_hash": digest,
            "provenance": ts.provenance, **({"card": card} if card is not None else {})}
    atomic_write_text(path, body)
    atomic_write_text(meta_path(path), json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return digest


def load_textset(path: Path, task: Task) -> TextSet:
    """Read a JSONL set for ``task``; any problem is a one-line DilmbenchError naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DilmbenchError(f"text set file '{path}' does not exist")
    texts, labels, weights, sources = [], [], [], []
    data = path.read_bytes()
    try:
        raw = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise DilmbenchError(f"{path}:{line}: not UTF-8 text (byte {exc.start}); a text set is UTF-8 JSON Lines, "
                             "one JSON object per line") from None
    for lineno, line in enumerate(raw.split("\n"), 1):  # (not splitlines: U+2028 may sit inside a text)
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DilmbenchError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise DilmbenchError(f"{path}:{lineno}: each line must be a JSON object")
        if "label" not in row and "labels" in row:  # DiLM's released sets name the column "labels"
            row["label"] = row.pop("labels")
        missing = [k for k in (*task.text_fields, "label") if k not in row]
        if missing:
            raise DilmbenchError(f"{path}:{lineno}: missing field(s) {missing} for task {task.name}")
        if any(not isinstance(row[k], str) for k in task.text_fields):
            raise DilmbenchError(f"{path}:{lineno}: text fields {task.text_fields} must be strings")
        label = row["label"]
        if isinstance(label, str) and label in task.label_names:
            label = task.label_names.index(label)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < task.num_labels:
            raise DilmbenchError(f"{path}:{lineno}: label {row['label']!r} is not one of task {task.name}'s labels "
                                 f"(0..{task.num_labels - 1} or {list(task.label_names)})")
        texts.append(tuple(row[k] for k in task.text_fields))
        labels.append(label)
        weights.append(row.get("weight"))
        sources.append(row.get("source_index"))
    if not texts:
        raise DilmbenchError(f"text set file '{path}' holds no examples")
    has_w = [w is not None for w in weights]
    if any(has_w) and not all(has_w):
        raise DilmbenchError(f"{path}: 'weight' must be given on every line or on none")
    provenance = {}
    mp = meta_path(path)
    if mp.is_file():
        try:
            provenance = json.loads(mp.read_text()).get("provenance", {})
        except json.JSONDecodeError:
            provenance = {}
    ts = TextSet(task=task.name, text_fields=task.text_fields, texts=texts, labels=labels,
                 weights=[float(w) for w in weights] if all(has_w) else None,
                 source_indices=sources if all(s is not None for s in sources) else None,
                 provenance=provenance)
    try:
        return ts.validate(task)
    except DilmbenchError as exc:
        raise DilmbenchError(f"{path}: {exc}") from exc
