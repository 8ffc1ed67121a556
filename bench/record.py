"""A run's result, typed, and where results live: the one layout the runner writes and validate, tables and report
read.

Layout under a results folder::

    runs[-<split>]/<task>/<method>/<evaluator>/<learner>/dpc<D>/set<SS>-init<I>.json   one RunRecord per run
    sets/<task>/<method>/dpc<D>/set<SS>.jsonl (+ .meta.json)                           the sets they trained on
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA_VERSION = 1
# the timings the runner records around every evaluator; the rest of a record's timing are the evaluator's phases
RUNNER_TIMINGS = ("data_load", "method_prepare", "make_set", "evaluate_total")


def slug(name: str) -> str:
    return name.replace("/", "--").replace(":", "-").replace(" ", "_")


def runs_dir(split: str) -> str:
    """Scores on the evaluation split live in runs/; scores on the dev split (for choosing things) in runs-dev/, so
    that a table never mixes them."""
    return "runs" if split == "eval" else f"runs-{split}"


def run_relpath(split: str, task: str, method: str, evaluator: str, learner: str, dpc: int, set_index: int,
                init: int) -> Path:
    """Where a run's record lives, relative to its results folder."""
    # one string, one Path: a grid plans thousands of these (a Path joined part by part cost 0.4 s of a paper dry run)
    return Path(f"{runs_dir(split)}/{task}/{slug(method)}/{evaluator}/{slug(learner)}/dpc{dpc}/"
                f"set{set_index:02d}-init{init}.json")


def set_relpath(task: str, method: str, dpc: int, set_index: int) -> Path:
    """Where a set lives, relative to its results folder."""
    return Path("sets") / task / slug(method) / f"dpc{dpc}" / f"set{set_index:02d}.jsonl"


@dataclass
class RunRecord:
    """One run's result file. The fields every reader uses are typed; ``raw`` is the file's whole JSON (written back
    as it was read, so records made by older versions keep every key they had)."""

    task: str
    method: str
    dpc: int
    set_index: int
    init_index: int
    evaluator: str
    learner: str
    score: float
    config_hash: str | None = None
    set_config_hash: str | None = None
    metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    seeds: dict = field(default_factory=dict)
    textset: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    device: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    scored_on: dict = field(default_factory=dict)
    created_at: str = ""
    raw: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, d: dict) -> "RunRecord":
        return cls(task=d["task"], method=d["method"], dpc=d["dpc"], set_index=d["set_index"],
                   init_index=d["init_index"], evaluator=d["evaluator"], learner=d["learner"], score=d["score"],
                   config_hash=d.get("config_hash"), set_config_hash=d.get("set_config_hash"),
                   metrics=d.get("metrics") or {}, config=d.get("config") or {}, seeds=d.get("seeds") or {},
                   textset=d.get("textset") or {}, models=d.get("models") or {}, data=d.get("data") or {},
                   environment=d.get("environment") or {}, device=d.get("device") or {},
                   timing=d.get("timing_s") or {}, scored_on=d.get("scored_on") or {},
                   created_at=d.get("created_at") or "", raw=d)

    @classmethod
    def read(cls, path: Path) -> "RunRecord | None":
        """The record in ``path`` if it is a complete result of the current schema, else None (missing, truncated,
        or not ours)."""
        try:
            d = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(d, dict) or d.get("schema_version") != SCHEMA_VERSION or "score" not in d:
            return None
        try:
            return cls.from_dict(d)
        except KeyError:
            return None

    def to_json(self) -> str:
        return json.dumps(self.raw, indent=1, sort_keys=False) + "\n"

    # --- what readers ask of a record ----------------------------------------------------------------------
    @property
    def split(self) -> str:
        """The split it was scored on (records from before dev scoring existed name none: eval)."""
        return self.scored_on.get("split", "eval")

    @property
    def relpath(self) -> Path:
        return run_relpath(self.split, self.task, self.method, self.evaluator, self.learner, self.dpc,
                           self.set_index, self.init_index)

    @property
    def data_id(self) -> str | None:
        """The fingerprint id of the data it was made on (None if it records none)."""
        return data_id(self.raw)

    @property
    def learner_revision(self) -> str | None:
        return (self.models.get("learner") or {}).get("revision")

    @property
    def git_commit(self) -> str | None:
        return self.environment.get("git_commit")

    @property
    def given_set(self) -> bool:
        """Whether its set was given (file:), not made by the method."""
        return "content_hash" in (self.config.get("set_identity") or {})


def data_id(raw: dict) -> str | None:
    """The fingerprint id of the data a result (its JSON) was made on, None if it records none."""
    return ((raw.get("data") or {}).get("fingerprint") or {}).get("id")


def read_runs(out: str | Path, split: str = "eval") -> tuple[list[RunRecord], list[str]]:
    """Every complete record under ``out`` for ``split``, and the paths of the files that are not one."""
    root = Path(out) / runs_dir(split)
    records, unreadable = [], []
    for path in sorted(root.rglob("*.json")) if root.is_dir() else []:
        rec = RunRecord.read(path)
        if rec is None:
            unreadable.append(str(path))
        else:
            records.append(rec)
    return records, unreadable


def timing_rollup(runs: list[tuple[str | None, dict]]) -> dict:
    """A cell's cost from its runs' (set path, timing) pairs: mean evaluation seconds per run, mean seconds to make a
    set (each set counted once), the method's one-off preparation (the largest recorded: each run records what its
    process paid); None where no run records the phase."""
    import numpy as np

    def mean(xs):
        return float(np.mean(np.asarray(xs, dtype=float))) if xs else None

    # per set, the run that made it: a later run that reused the set (another learner, a new init) records only
    # the seconds it took to read it
    first: dict = {}
    for path, timing in runs:
        if path not in first or (timing.get("make_set") or 0) > (first[path].get("make_set") or 0):
            first[path] = timing
    evaluate = [t["evaluate_total"] for _, t in runs if t.get("evaluate_total") is not None]
    make = [t["make_set"] for t in first.values() if t.get("make_set") is not None]
    prepare = [t["method_prepare"] for _, t in runs if t.get("method_prepare") is not None]
    return {"runs": len(runs), "evaluate_s": mean(evaluate), "make_set_s": mean(make),
            "method_prepare_s": max(prepare) if prepare else None}
