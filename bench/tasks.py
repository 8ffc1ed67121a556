"""Task metadata (one dataclass per task) and data loading from the hub, a local mirror, or the package.

Data sources, in the order a config names them:
  * ``hub`` (default): ``datasets.load_dataset(hub_id, hub_config, revision=...)``.
  * a local directory in the hub's parquet layout (``<dir>/<config>/<split>-*.parquet``), from
    ``--data-dir`` or ``$DILMBENCH_DATA_DIR``.
  * ``embedded``: SST-2 (train + validation) shipped inside the package, so the quick preset needs no network.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable
from pathlib import Path

import numpy as np

from .errors import DilmbenchError
from .registry import Registry

GLUE_REVISION = "bcdcba79d07bc864c1c254ccfcedcce55bcc9a8c"
COST_SAMPLE = 4000  # texts per split whose lengths the cost model reads (TaskData.length_sample)
SUMMARY_VERSION = 1  # of what PlannedData reads from the cache (TaskData.summary): a new one plans from the data again
EMBEDDED_DIR = Path(__file__).parent / "data" / "glue"


def accuracy(labels, preds) -> dict:
    from sklearn.metrics import accuracy_score

    acc = float(accuracy_score(labels, preds))
    return {"accuracy": acc, "score": acc}


def acc_f1_mean(labels, preds) -> dict:
    """QQP's headline number in the paper: the mean of accuracy and F1 (positive class 1)."""
    from sklearn.metrics import f1_score

    out = accuracy(labels, preds)
    out["f1"] = float(f1_score(labels, preds))
    out["score"] = (out["accuracy"] + out["f1"]) / 2
    return out


METRICS = {"accuracy": accuracy, "acc_f1_mean": acc_f1_mean}
# what a table's score is, in words (a reader must not take QQP's number for an accuracy)
METRIC_WORDS = {"accuracy": "accuracy", "acc_f1_mean": "mean of accuracy and F1 (positive class: label 1)"}


@dataclass(frozen=True)
class Task:
    """A task's metadata. A plugin task is one of these, registered with :func:`register_task` (or through the
    entry-point group ``dilmbench.tasks``); its data is read like GLUE's, from the hub or a local folder in the hub's
    parquet layout (``<data dir>/<hub_config>/<split>-*.parquet``, columns: the text fields and ``label``)."""

    name: str
    description: str
    hub_id: str
    hub_config: str
    revision: str | None
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...]
    train_split: str
    eval_split: str
    # the name of one of METRICS, or a callable (labels, preds) -> {"score": headline, other metrics...}
    metric: str | Callable = "accuracy"
    # rows of the complete train and evaluation splits (GLUE's), so a result made on fewer rows says it is a subset
    full_rows: dict | None = None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return len(self.text_fields) == 2

    @property
    def score_words(self) -> str:
        """The headline score in words, e.g. for a table's notes."""
        if callable(self.metric):
            return f"the task's own metric ({getattr(self.metric, '__name__', 'a function')})"
        return METRIC_WORDS.get(self.metric, self.metric)

    def score(self, labels, preds) -> dict:
        """The task's metrics on predictions; ``score`` is the headline number."""
        fn = self.metric if callable(self.metric) else METRICS.get(self.metric)
        if fn is None:
            raise DilmbenchError(f"task '{self.name}' names unknown metric '{self.metric}'; known: {', '.join(METRICS)}")
        preds = np.asarray(preds)
        out = fn(np.asarray(labels), preds)
        if "score" not in out:
            raise DilmbenchError(f"task '{self.name}''s metric returned no 'score'")
        # how often each class was answered: a score near a constant answer's (benchmarks/analyses/chance_levels.py) reads as
        # "learned nothing" only if the answers say so
        out["predicted_share"] = [float(np.mean(preds == k)) if len(preds) else 0.0 for k in range(self.num_labels)]
        return out


TASK_GROUP = "dilmbench.tasks"


def _not_a_task(obj) -> str | None:
    return None if isinstance(obj, Task) else f"is a {type(obj).__name__}, not a dilmbench Task"


TASKS = Registry("task", TASK_GROUP, check=_not_a_task, names_it=False)
for _task in (
    Task(
        name="sst2", description="GLUE SST-2: binary sentiment of movie-review phrases",
        hub_id="nyu-mll/glue", hub_config="sst2", revision=GLUE_REVISION,
        text_fields=("sentence",), label_names=("negative", "positive"),
        train_split="train", eval_split="validation", metric="accuracy",
        full_rows={"train": 67_349, "validation": 872}),
    Task(
        name="qqp", description="GLUE QQP: are two Quora questions duplicates (score: mean of accuracy and F1)",
        hub_id="nyu-mll/glue", hub_config="qqp", revision=GLUE_REVISION,
        text_fields=("question1", "question2"), label_names=("not_duplicate", "duplicate"),
        train_split="train", eval_split="validation", metric="acc_f1_mean",
        full_rows={"train": 363_846, "validation": 40_430}),
    Task(
        name="mnli", description="GLUE MNLI (matched): entailment / neutral / contradiction",
        hub_id="nyu-mll/glue", hub_config="mnli", revision=GLUE_REVISION,
        text_fields=("premise", "hypothesis"), label_names=("entailment", "neutral", "contradiction"),
        train_split="train", eval_split="validation_matched", metric="accuracy",
        full_rows={"train": 392_702, "validation_matched": 9_815}),
):
    TASKS.register(_task.name, _task)


def register_task(task: Task) -> Task:
    """Make a task known (from a ``--plugin`` file: ``register_task(Task(...))``)."""
    if not isinstance(task, Task):
        raise DilmbenchError(f"register_task takes a dilmbench.tasks.Task, got {type(task).__name__}")
    return TASKS.register(task.name, task)


def get_task(name: str) -> Task:
    return TASKS.get(name)


def resolve_source(source: str | None) -> str:
    """'hub', 'embedded', or a directory path. None means $DILMBENCH_DATA_DIR if set, else the hub."""
    if source in (None, ""):
        return os.environ.get("DILMBENCH_DATA_DIR") or "hub"
    return str(source)


def _parquet_files(root: Path, task: Task, split: str) -> list[str]:
    return sorted(str(p) for p in (root / task.hub_config).glob(f"{split}-*.parquet"))


@lru_cache(maxsize=16)
def _load_split_cached(task_name: str, split: str, source: str, stamp: tuple = ()):
    # (stamp: the local files' sizes and modification times, so a file changed within one process is read again)
    import datasets

    task = TASKS[task_name]
    if source == "hub":
        try:
            ds = datasets.load_dataset(task.hub_id, task.hub_config, split=split, revision=task.revision)
        except Exception as exc:  # the hub raises many types; all mean "not obtainable"
            raise DilmbenchError(
                f"cannot load {task.hub_id}/{task.hub_config} split '{split}' from the Hugging Face Hub "
                f"({type(exc).__name__}); offline, pass --data-dir DIR (hub parquet layout) or --data-source embedded (sst2)"
            ) from exc
    else:
        root = EMBEDDED_DIR if source == "embedded" else Path(source)
        files = _parquet_files(root, task, split)
        if not files:
            where = "the embedded data (only sst2 train/validation)" if source == "embedded" else f"'{root}'"
            raise DilmbenchError(
                f"no parquet files for {task.name} split '{split}' in {where}: expected {task.hub_config}/{split}-*.parquet")
        ds = datasets.load_dataset("parquet", data_files={split: files}, split=split)
    missing = [c for c in (*task.text_fields, "label") if c not in ds.column_names]
    if missing:
        raise DilmbenchError(f"{task.name} split '{split}' lacks column(s) {missing}; found {ds.column_names}")
    return ds


def _file_stamps(files: list[str]) -> tuple:
    """(path, size, modification time) of each file: what tells a changed local file from the one read before."""
    stats = [(f, os.stat(f)) for f in files]
    return tuple((f, st.st_size, st.st_mtime_ns) for f, st in stats)


def load_split(task: Task, split: str, source: str | None = None):
    source = resolve_source(source)
    stamp = ()
    if source != "hub":
        stamp = _file_stamps(_parquet_files(EMBEDDED_DIR if source == "embedded" else Path(source), task, split))
    return _load_split_cached(task.name, split, source, stamp)


@dataclass
class TaskData:
    """A task's data as the runner hands it to methods and evaluators.

    ``pool`` is the train split minus the dev split; ``dev`` is carved from train (stratified, fixed seed) for
    anything a method or evaluator must tune or select; ``eval`` is the evaluation split, used only for scores.
    """

    task: Task
    pool: object
    dev: object
    eval: object
    source: str
    dev_size: int
    dev_seed: int

    def __post_init__(self):
        self._columns: dict = {}
        # (the train split and the pool's and dev's row indices in it, where load_task_data carved them: their texts
        # and labels are then read from train's columns once, not gathered row by row through each split's index map)
        self._carved: tuple | None = None

    def texts(self, split: str) -> list[tuple[str, ...]]:
        """The split's texts as tuples (1 or 2 fields); converted from Arrow once and kept."""
        if ("texts", split) not in self._columns and self._carved is not None and split in ("pool", "dev"):
            train, indices = self._carved[0], self._carved[1][split]
            if ("texts", "train") not in self._columns:
                arrow = train.with_format("arrow")
                self._columns[("texts", "train")] = list(zip(*[arrow[f].to_pylist() for f in self.task.text_fields]))
            whole = self._columns[("texts", "train")]
            self._columns[("texts", split)] = [whole[i] for i in indices]
        if ("texts", split) not in self._columns:
            ds = getattr(self, split)
            if hasattr(ds, "with_format"):  # whole Arrow columns (a datasets Column iterates row by row: 40x slower)
                arrow = ds.with_format("arrow")
                cols = [arrow[f].to_pylist() for f in self.task.text_fields]
            else:
                cols = [ds[f] for f in self.task.text_fields]
            self._columns[("texts", split)] = list(zip(*cols))
        return self._columns[("texts", split)]

    def labels(self, split: str) -> np.ndarray:
        if ("labels", split) not in self._columns:
            ds = getattr(self, split)
            col = ds.with_format("arrow")["label"].to_numpy() if hasattr(ds, "with_format") else ds["label"]
            self._columns[("labels", split)] = np.asarray(col, dtype=np.int64)
        return self._columns[("labels", split)]

    def column(self, split: str, name: str) -> list | None:
        ds = getattr(self, split)
        if name not in ds.column_names:
            return None
        if (name, split) not in self._columns:
            self._columns[(name, split)] = ds[name]
        return self._columns[(name, split)]

    def fingerprint(self) -> dict:
        """What the data is, not where it came from: per split (pool, dev, eval) its rows and a content hash of its
        texts and labels, and whether the train and evaluation splits are complete (the task's ``full_rows``) or a
        subset. Two results with different fingerprints were made on different data."""
        if "fingerprint" not in self._columns:
            cached = self._cached_fingerprint()
            if cached is not None:
                self._columns["fingerprint"] = cached
                return cached
            fp = {}
            for split in ("pool", "dev", "eval"):
                h = hashlib.sha256(texts_fingerprint(self.texts(split)).encode())
                h.update(self.labels(split).astype("<i8").tobytes())
                fp[split] = {"rows": len(getattr(self, split)), "sha256": h.hexdigest()[:16]}
            full = self.task.full_rows
            if full:
                train_rows = fp["pool"]["rows"] + fp["dev"]["rows"]
                fp["complete"] = (train_rows == full.get(self.task.train_split)
                                  and fp["eval"]["rows"] == full.get(self.task.eval_split))
                fp["of_full"] = {"train": [train_rows, full.get(self.task.train_split)],
                                 "eval": [fp["eval"]["rows"], full.get(self.task.eval_split)]}
            else:
                fp["complete"] = None  # a task without known full sizes
            fp["id"] = hashlib.sha256("|".join(fp[s]["sha256"] for s in ("pool", "dev", "eval")).encode()).hexdigest()[:12]
            self._columns["fingerprint"] = fp
            self._cached_fingerprint(fp)
        return self._columns["fingerprint"]

    def _cached_fingerprint(self, write: dict | None = None) -> dict | None:
        """The fingerprint kept in the cache under datasets' own fingerprints of the three splits (which follow the
        files they were read from and the rows selected; datasets reuses its Arrow cache on the same ones, so a
        fingerprint read back is exactly as fresh as the rows it would be computed from). Hashing every text of the
        pool took 0.3 s of each task's planning. None where the splits carry no datasets fingerprint."""
        import json

        from .cache import cache_root

        keys = [getattr(getattr(self, split), "_fingerprint", None) for split in ("pool", "dev", "eval")]
        if not all(isinstance(k, str) and k for k in keys):
            return None
        path = cache_root() / "data-fingerprints" / f"{self.task.name}-{'-'.join(keys)}.json"
        if write is not None:
            _write_cache(path, json.dumps(write))
            return write
        try:
            fp = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        ok = isinstance(fp, dict) and all(fp.get(s, {}).get("rows") == len(getattr(self, s)) for s in ("pool", "dev", "eval"))
        return fp if ok and isinstance(fp.get("id"), str) else None

    def provenance(self) -> dict:
        return {"source": self.source, "hub_id": self.task.hub_id, "hub_config": self.task.hub_config,
                "revision": self.task.revision, "dev_size": self.dev_size, "dev_seed": self.dev_seed,
                "pool_size": len(self.pool), "eval_split": self.task.eval_split, "eval_size": len(self.eval)}

    def rows(self, split: str) -> int:
        return len(getattr(self, split))

    def class_counts(self, split: str) -> list[int]:
        return np.bincount(self.labels(split), minlength=self.task.num_labels).tolist()

    def length_sample(self, sample: int = COST_SAMPLE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The cost model's estimated token lengths (dilmbench.cost.estimated_tokens) of up to ``sample`` pool texts
        and ``sample`` evaluation texts, drawn without replacement with one seeded generator (pool first)."""
        from .cost import estimated_tokens

        rng = np.random.default_rng(seed)
        out = []
        for split in ("pool", "eval"):
            texts = self.texts(split)
            pick = rng.choice(len(texts), min(sample, len(texts)), replace=False) if len(texts) else []
            out.append(estimated_tokens([texts[i] for i in pick]))
        return out[0], out[1]

    def summary(self) -> dict:
        """What planning a grid reads of the data (sizes, the pool's class counts, the fingerprint, provenance, the cost
        model's length sample), as kept in the cache for PlannedData."""
        pool, ev = self.length_sample()
        return {"version": SUMMARY_VERSION, "rows": {s: self.rows(s) for s in ("pool", "dev", "eval")},
                "class_counts": {"pool": self.class_counts("pool")}, "fingerprint": self.fingerprint(),
                "provenance": {k: v for k, v in self.provenance().items() if k != "source"},
                "length_sample": {"pool": pool.astype(int).tolist(), "eval": ev.astype(int).tolist()}}


class PlannedData:
    """A task's data as planning a grid sees it: answered from the summary a previous plan of the same files kept in
    the cache (sizes, class counts, the fingerprint, the cost model's length sample), so that a dry run of the paper's
    grid neither imports datasets nor reads a parquet file; anything else (texts, labels, the splits) loads the data
    then, as load_task_data would, and checks it is the data the summary describes."""

    def __init__(self, task: Task, source: str, dev_size: int, dev_seed: int, summary: dict):
        self.task, self.source, self.dev_seed = task, source, dev_seed
        self._asked_dev_size, self._summary, self._data = dev_size, summary, None
        self.dev_size = summary["provenance"]["dev_size"]

    def fingerprint(self) -> dict:
        return self._summary["fingerprint"]

    def provenance(self) -> dict:
        return {"source": self.source, **self._summary["provenance"]}

    def rows(self, split: str) -> int:
        return self._summary["rows"][split]

    def class_counts(self, split: str) -> list[int]:
        counts = self._summary["class_counts"].get(split)
        return list(counts) if counts is not None else self.loaded().class_counts(split)

    def length_sample(self, sample: int = COST_SAMPLE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        if (sample, seed) != (COST_SAMPLE, 0):
            return self.loaded().length_sample(sample, seed)
        got = self._summary["length_sample"]
        return np.asarray(got["pool"], dtype=float), np.asarray(got["eval"], dtype=float)

    def loaded(self) -> TaskData:
        if self._data is None:
            data = _load_task_data(self.task, self.source, self._asked_dev_size, self.dev_seed)
            if data.fingerprint()["id"] != self.fingerprint()["id"]:
                raise DilmbenchError(f"{self.task.name}'s data changed after this grid was planned (fingerprint "
                                     f"{data.fingerprint()['id']}, planned on {self.fingerprint()['id']}): run again")
            self._data = data
        return self._data

    def __getattr__(self, name: str):
        if name.startswith("_"):  # (pickling and copying look for these before __init__ has run)
            raise AttributeError(name)
        return getattr(self.loaded(), name)


def carve_dev(labels: np.ndarray, dev_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of train indices into (pool, dev); deterministic for a seed: scikit-learn's
    train_test_split. Its dev rows are kept in the cache under the labels' hash, the size, the seed and scikit-learn's
    version, so planning a grid (a dry run) does not import scikit-learn again (0.7 s) for a split it has made."""
    idx = np.arange(len(labels))
    if dev_size <= 0:
        return idx, idx[:0]
    if dev_size >= len(labels):
        raise DilmbenchError(f"dev_size {dev_size} must be smaller than the train split ({len(labels)} rows)")
    import json

    path = _carved_path(labels, dev_size, seed)
    dev = None
    if path is not None and path.is_file():
        try:
            dev = np.asarray(json.loads(path.read_text()))
        except (OSError, ValueError):
            dev = None
        if dev is not None and not (dev.ndim == 1 and len(dev) == dev_size and dev.dtype.kind == "i"
                                    and (len(dev) == 0 or (dev.min() >= 0 and dev.max() < len(labels)))):
            dev = None  # not a split of these labels: made again
    if dev is None:
        from sklearn.model_selection import train_test_split

        _, dev = train_test_split(idx, test_size=dev_size, stratify=labels, random_state=seed)
        dev = np.sort(dev)
        if path is not None:
            _write_cache(path, json.dumps(dev.tolist()))
    dev = dev.astype(np.int64)
    keep = np.ones(len(labels), dtype=bool)
    keep[dev] = False
    return idx[keep], dev


def _carved_path(labels: np.ndarray, dev_size: int, seed: int):
    from importlib.metadata import PackageNotFoundError, version

    from .cache import cache_root

    try:
        sk = version("scikit-learn")
    except PackageNotFoundError:
        return None
    key = hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int64).tobytes()).hexdigest()[:16]
    return cache_root() / "dev-splits" / f"{key}-n{len(labels)}-dev{dev_size}-seed{seed}-sklearn{sk}.json"


def _write_cache(path, text: str) -> None:
    """A cache file written whole or not at all; a cache that cannot be written (read-only) is left as it is: what it
    would hold is made again next time, as before it existed."""
    from .cache import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError:
        pass


def load_task_data(task: Task, source: str | None = None, dev_size: int = 2000, dev_seed: int = 0,
                   planning: bool = False) -> TaskData | PlannedData:
    """The task's data: train split in pool and dev (carve_dev), the evaluation split. ``planning``: a PlannedData
    where the cache holds a summary of these very files (after the first plan of them), else the TaskData, whose
    summary is then kept for the next plan."""
    import json

    source = resolve_source(source)
    if not planning:
        return _load_task_data(task, source, dev_size, dev_seed)
    path = _summary_path(task, source, dev_size, dev_seed)
    if path is not None:
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            summary = None
        if isinstance(summary, dict) and summary.get("version") == SUMMARY_VERSION:
            return PlannedData(task, source, dev_size, dev_seed, summary)
    data = _load_task_data(task, source, dev_size, dev_seed)
    if path is not None:
        _write_cache(path, json.dumps(data.summary()))
    return data


def _summary_path(task: Task, source: str, dev_size: int, dev_seed: int):
    """Where the summary of these files is kept: keyed on the files themselves (paths, sizes, modification times) or,
    from the hub, on the pinned revision; on the dev split's request and scikit-learn's version (which carve it); on
    numpy's (which draws the length sample). None where the data cannot be pinned (the hub at a moving revision)."""
    from importlib.metadata import PackageNotFoundError, version

    from .cache import cache_root, stable_hash

    if source == "hub":
        if not (isinstance(task.revision, str) and len(task.revision) == 40):
            return None
        where = [task.hub_id, task.hub_config, task.revision]
    else:
        root = EMBEDDED_DIR if source == "embedded" else Path(source)
        where = []
        for split in (task.train_split, task.eval_split):
            files = _parquet_files(root, task, split)
            if not files:
                return None  # the load says what is missing
            where += list(_file_stamps(files))
    try:
        versions = [version("scikit-learn"), np.__version__]
    except PackageNotFoundError:
        return None
    key = stable_hash({"task": task.name, "fields": list(task.text_fields), "splits": [task.train_split, task.eval_split],
                       "where": where, "dev": [dev_size, dev_seed], "versions": versions})
    return cache_root() / "data-summaries" / f"{task.name}-{key}.json"


def _load_task_data(task: Task, source: str, dev_size: int, dev_seed: int) -> TaskData:
    train = load_split(task, task.train_split, source)
    evaluation = load_split(task, task.eval_split, source)
    # the whole Arrow column at once (a datasets Column converts row by row: 1-3 s on QQP's 81k rows)
    labels = np.asarray(train.with_format("arrow")["label"].to_numpy() if hasattr(train, "with_format")
                        else train["label"], dtype=np.int64)
    bad = sorted(set(np.unique(labels).tolist()) - set(range(task.num_labels)))
    if bad:
        raise DilmbenchError(f"{task.name} train split has labels {bad} outside 0..{task.num_labels - 1}")
    pool_idx, dev_idx = carve_dev(labels, min(dev_size, len(labels) // 10), dev_seed)
    data = TaskData(task=task, pool=train.select(pool_idx), dev=train.select(dev_idx), eval=evaluation,
                    source=source, dev_size=len(dev_idx), dev_seed=dev_seed)
    if hasattr(train, "with_format"):
        data._carved = (train, {"pool": pool_idx.tolist(), "dev": dev_idx.tolist()})
        data._columns[("labels", "pool")], data._columns[("labels", "dev")] = labels[pool_idx], labels[dev_idx]
    return data


def texts_fingerprint(texts: list[tuple[str, ...]]) -> str:
    h = hashlib.sha256()
    for row in texts:
        for t in row:
            h.update(t.encode("utf-8"))
            h.update(b"\x1f")
        h.update(b"\x1e")
    return h.hexdigest()[:16]
