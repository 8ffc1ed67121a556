"""The grid runner: tasks x methods x DPC x sets -> text sets; x learners x inits -> one result file per run.

Layout under the output directory::

    sets/<task>/<method>/dpc<D>/set<SS>.jsonl (+ .meta.json)
    runs/<task>/<method>/<evaluator>/<learner>/dpc<D>/set<SS>-init<I>.json

Every file is written atomically. The whole grid is planned before anything runs. A rerun skips runs whose result file
is complete and has the same config hash and redoes truncated ones (``only-missing``); a complete result made under
another configuration stops it before any run, since replacing it would destroy a finished result (``changed``
replaces such results, ``always`` redoes everything, ``never`` touches no existing file).
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path

from .api import EvalContext, MethodContext
from .cards import set_card
from .cache import cache_root, first_difference, stable_hash
from .errors import DilmbenchError
from .config import Overwrite, build_evaluator, embed_identity
from .registry import METHODS
from .seeds import derive_seed  # noqa: F401  (re-exported: dilmbench.runner.derive_seed)
from .tasks import get_task, load_task_data
from .record import RUNNER_TIMINGS, SCHEMA_VERSION, RunRecord, run_relpath, runs_dir, set_relpath, slug  # noqa: F401
from .record import data_id as record_data_id
from .textset import TextSet, atomic_write_text, load_textset, meta_path, save_textset


@dataclass
class MethodSpec:
    label: str  # as written by the user, e.g. "herding" or "file:sets/"
    name: str  # registry name
    options: dict

    @classmethod
    def parse(cls, text: str, method_options: dict) -> "MethodSpec":
        """'name' or 'name:ARG' for a method that declares ``argument`` (the option ARG sets, e.g. file:PATH)."""
        name, sep, arg = text.partition(":")
        options = dict(method_options.get(name, {}))
        if not sep:
            return cls(label=text, name=text, options=options)
        key = getattr(METHODS.get(name), "argument", None)
        if key is None:
            raise DilmbenchError(f"method '{name}' takes no ':' argument (in '{text}')")
        if not arg:
            raise DilmbenchError(f"'{name}:' needs its {key}, e.g. --methods {name}:path/to/sets/")
        return cls(label=f"{name}-" + Path(arg.rstrip("/")).name, name=name, options={**options, key: arg})



@dataclass
class MadeSet:
    """A cell's set, made or reused, with what each of its runs' results records about how it came to be."""
    task: object
    data: object
    spec: MethodSpec
    method: object
    cell: object  # the planned cell (dpc, set index, identity, runs)
    seeded_by_content: bool
    set_seed: int
    ts: TextSet
    set_file: Path
    env: dict
    device: dict
    bar: object
    timing: dict  # data_load, method_prepare, make_set (seconds)
    threads: int | None


@dataclass
class PendingRun:
    """One run of a cell waiting for its evaluation: here, in a worker, or in a batch (--batch-runs)."""
    made: MadeSet
    run: object  # the planned run (path, learner, init, identity, status)
    init_seed: int

    def __str__(self) -> str:
        return str(self.run.path)

def ensure_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DilmbenchError(f"output directory '{out}' is not writable ({exc.strerror or exc})") from exc


def read_result(path: Path) -> dict | None:
    """The result in ``path`` as its JSON if it is complete and valid, else None (missing, truncated, or not ours)."""
    rec = RunRecord.read(path)
    return None if rec is None else rec.raw


_UNREAD = object()  # result_status's "the caller has not read the file" (None is "read: not a complete result")


def result_status(path: Path, config_hash: str, data_id: str | None = None, record=_UNREAD) -> str:
    """'missing', 'done' (complete, same config, same data), 'incomplete' (truncated or not ours), 'other-config',
    'other-data' (same config, made on data with another fingerprint) or 'no-fingerprint' (made before results
    recorded their data's fingerprint; see Runner._prove_data). ``record``: the file's read_result(), when the
    caller has it already (None when it was read and is not a complete result)."""
    if not path.exists():
        return "missing"
    done = read_result(path) if record is _UNREAD else record
    if done is None:
        return "incomplete"
    if done.get("config_hash") != config_hash:
        return "other-config"
    recorded = result_data_id(done)
    if data_id is None or recorded == data_id:
        return "done"
    return "no-fingerprint" if recorded is None else "other-data"


def result_data_id(record: dict) -> str | None:
    """The fingerprint id of the data a result was made on (TaskData.fingerprint), None if it records none."""
    return record_data_id(record)


# which existing results each --overwrite mode runs again ("other-config" under only-missing stops the run instead)
CHANGED = {"other-config", "other-data", "no-fingerprint", "other-model"}  # finished, but not as this run would be
REDO = {Overwrite.NEVER.value: {"missing"}, Overwrite.ONLY_MISSING.value: {"missing", "incomplete"},
        Overwrite.CHANGED.value: {"missing", "incomplete", *CHANGED},
        Overwrite.ALWAYS.value: {"missing", "incomplete", *CHANGED, "done"}}
OVERWRITE_MODES = tuple(m.value for m in Overwrite)
REPLACING = {"incomplete": "it is not a complete result", "other-config": "it was made under another configuration",
             "other-data": "it was made on other data (another fingerprint)",
             "no-fingerprint": "it records no data fingerprint and its data cannot be proven the same",
             "other-model": "it was made with another snapshot (revision) of a model it used"}


@dataclass
class PlannedRun:
    learner: str
    init: int
    path: Path
    config_hash: str
    identity: dict
    status: str  # result_status() of its file when planned


@dataclass
class PlannedSet:
    dpc: int
    set_index: int
    given: TextSet | None  # a fixed set (file: methods), else made by the method
    identity: dict
    config_hash: str
    runs: list[PlannedRun]


@dataclass
class PlannedMethod:
    """One task x method of the plan: the task's data (loaded and checked) and its cells."""
    task: object
    data: object
    load_s: float  # seconds the data took to load
    spec: MethodSpec
    cells: list[PlannedSet]


def parse_shard(shard: str | None) -> tuple[int, int]:
    """'K/N' -> (K, N): this process takes every N-th set of the grid (in plan order: task, method, DPC, set), starting
    at the K-th, with all of its runs, so N processes or machines with K = 0..N-1 cover the grid once. None: (0, 1)."""
    if shard is None:
        return 0, 1
    try:
        k, n = (int(x) for x in str(shard).split("/"))
    except ValueError:
        raise DilmbenchError(f"--shard must be K/N with whole numbers, e.g. 0/2, got '{shard}'") from None
    if not 0 <= k < n:
        raise DilmbenchError(f"--shard K/N needs 0 <= K < N, got '{shard}'")
    return k, n


def _fixed_sets(method, task, data):
    """A method's given sets, with the task's data where its fixed_sets takes it (plugins written before it did not)."""
    import inspect

    if "data" in inspect.signature(method.fixed_sets).parameters:
        return method.fixed_sets(task, data=data)
    return method.fixed_sets(task)


class Runner:
    def __init__(self, cfg: dict, out: str | Path, overwrite: str = "only-missing", progress: bool = True,
                 cache_dir: str | Path | None = None, log=print, workers: int = 1, threads_per_worker: int | None = None,
                 executor: str = "local", ray_address: str | None = None, sets_only: bool = False,
                 shard: str | None = None, batch_runs: int = 1, only: set | None = None):
        if overwrite not in OVERWRITE_MODES:
            raise DilmbenchError(f"--overwrite must be one of {', '.join(OVERWRITE_MODES)}, got '{overwrite}'")
        self.cfg, self.out, self.overwrite, self.progress = cfg, Path(out), overwrite, progress
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root()
        self.log = log
        self.counts = {"done": 0, "skipped": 0, "sets_made": 0, "sets_reused": 0}
        # runs the evaluator could not make with their set (an ICL prompt longer than the learner's context): skipped,
        # the grid going on, and listed here as "path: why" for the caller to report
        self.unfit: list[str] = []
        # make and save every set a run needs (with its card), evaluate none: a later run without it reuses them
        self.sets_only = sets_only
        self.shard = parse_shard(shard)
        if sets_only:
            self.counts["not_evaluated"] = 0
        self.phases: dict[str, float] = {}  # wall seconds this invocation spent per phase
        if not isinstance(workers, int) or workers < 1:
            raise DilmbenchError(f"--workers must be a whole number of at least 1, got {workers}")
        self.workers, self.threads_per_worker = workers, threads_per_worker
        if executor not in ("local", "ray"):
            raise DilmbenchError(f"--executor must be local or ray, got '{executor}'")
        self.ray_address = ray_address
        self.executor = "ray" if executor == "ray" else ("sequential" if workers == 1 else "local-workers")
        # hand the evaluator (or a worker) up to this many runs of a (task, method, DPC, learner) at once: its
        # evaluate_many may train them together (finetune's batched path); results are the same within its tolerance
        if not isinstance(batch_runs, int) or batch_runs < 1:
            raise DilmbenchError(f"--batch-runs must be a whole number of at least 1, got {batch_runs}")
        self.batch_runs = batch_runs
        # only these runs, as (task, method label, learner, dpc, set index, init) (`dilmbench reproduce`'s sample)
        self.only = only
        # method labels whose sets must be found on disk, never made (`dilmbench reproduce` re-evaluates the sets a
        # generator wrote rather than writing them again)
        self.no_make: set = set()

    # ---- validation before anything is written -------------------------------------------------------------
    def preflight(self):
        from .models import check_model_available, pick_device

        self.build()
        self.device = pick_device(self.cfg.get("device"))
        ensure_writable(self.out)
        for model_id in self.required_models():
            check_model_available(model_id)

    def build(self) -> None:
        """The grid's tasks, methods and evaluator from the config (bad names stop here); nothing is loaded."""
        cfg = self.cfg
        self.tasks = [get_task(t) for t in cfg["tasks"]]
        self.specs = [MethodSpec.parse(m, cfg.get("method_options", {})) for m in cfg["methods"]]
        self.methods = {s.label: METHODS.get(s.name).for_preset(cfg.get("preset"), **s.options) for s in self.specs}
        self.evaluator = build_evaluator(cfg)

    def required_models(self) -> list[str]:
        models = set() if self.sets_only else set(self.evaluator.required_models())
        for m in self.methods.values():
            models.update(m.required_models(self.cfg["encoder"]))
        return sorted(models)

    # ---- identities and paths ------------------------------------------------------------------------------
    def set_identity(self, data, spec: MethodSpec, dpc: int, set_index: int) -> dict:
        return self.set_identity_on(data.task, {k: v for k, v in data.provenance().items() if k != "source"}, spec,
                                    dpc, set_index)

    def set_identity_on(self, task, data_identity: dict, spec: MethodSpec, dpc: int, set_index: int) -> dict:
        """A set's identity given its data's (validate compares a finished run with its declaration this way, on the
        data the run recorded, without loading any)."""
        method = self.methods[spec.label]
        ident = {"task": task.name, "data": data_identity,
                 "method": {**method.identity(), **method.task_identity(task)}, "dpc": dpc, "set_index": set_index,
                 "base_seed": self.cfg["seed"]}
        if method.needs_embeddings:
            ident["encoder"] = {"model": self.cfg["encoder"], "pooling": self.cfg["pooling"],
                                **embed_identity(self.cfg)}
        return ident

    @cached_property
    def _evaluator_identity(self) -> tuple[dict, dict]:
        """The evaluator's configuration (less its learners, which each run names) and code, as every run carries them."""
        ident = self.evaluator.identity()
        return ({k: v for k, v in ident["config"].items() if k != "learners"},
                {k: v for k, v in ident.items() if k in ("version", "source_sha256")})

    def run_identity(self, set_hash: str, learner: str, init: int) -> dict:
        """One run's identity (its hash names the result): its set's, the evaluator's configuration and code, the
        learner, the init."""
        eval_ident, eval_code = self._evaluator_identity
        run_ident = {"set": set_hash, "evaluator": self.evaluator.name, "evaluator_config": eval_ident,
                     "learner": learner, "init": init}
        if eval_code:  # (built-ins without a version keep the identity they always had)
            run_ident["evaluator_code"] = eval_code
        per_learner = self.evaluator.learner_identity(learner)
        if per_learner:  # (likewise: added only where the evaluator says something)
            run_ident["learner_identity"] = per_learner
        if self.cfg.get("score_split", "eval") != "eval":  # (eval keeps the identity it always had)
            run_ident["score_split"] = self.cfg["score_split"]
        return run_ident

    def set_path(self, task: str, label: str, dpc: int, set_index: int) -> Path:
        return self.out / set_relpath(task, label, dpc, set_index)

    def run_path(self, task: str, label: str, learner: str, dpc: int, set_index: int, init: int) -> Path:
        return self.out / run_relpath(self.cfg.get("score_split", "eval"), task, label, self.evaluator.name, learner,
                                      dpc, set_index, init)

    # ---- the grid ------------------------------------------------------------------------------------------
    def plan(self) -> list[PlannedMethod]:
        """Every task's data loaded and checked, every run's identity and path, and what to do with it, before
        anything is written: bad input and results that would be destroyed stop the run here."""
        cfg = self.cfg
        learners = self.evaluator.learners()
        split = cfg.get("score_split", "eval")
        plan, in_the_way = [], []
        self._to_stamp: list = []  # old results proven to be on today's data: run() records their fingerprint
        shard_k, shard_n = self.shard
        n_cell = -1
        for task in self.tasks:
            t_load = time.perf_counter()
            data = load_task_data(task, cfg.get("data_source"), cfg["dev_size"], cfg["dev_seed"], planning=True)
            load_s = time.perf_counter() - t_load
            if any(not getattr(self.methods[spec.label], "gives_sets", False) for spec in self.specs):
                counts = data.class_counts("pool")
                for c, n_c in enumerate(counts):
                    if max(cfg["dpc"]) > n_c:
                        raise DilmbenchError(f"DPC {max(cfg['dpc'])} is larger than class '{task.label_names[c]}' of {task.name} ({n_c} examples in the pool)")
            if data.rows(split) == 0:
                raise DilmbenchError(f"cannot score on the {split} split of {task.name}: it is empty (dev_size is 0)")
            fingerprint = data.fingerprint()
            for spec in self.specs:
                method_models = {"encoder": cfg["encoder"]} if self.methods[spec.label].needs_embeddings else {}
                fixed = _fixed_sets(self.methods[spec.label], task, data)
                if fixed is not None:
                    describe = getattr(self.methods[spec.label], "describe_sets", None)
                    if describe is not None:
                        self.log(f"{spec.label}: {describe(fixed)}")
                    fixed_dpc = getattr(self.methods[spec.label], "fixed_dpc", None)
                    cells = [(max(ts.class_counts(task.num_labels)) if fixed_dpc is None else fixed_dpc, i, ts)
                             for i, ts in enumerate(fixed)]
                else:
                    cells = [(dpc, i, None) for dpc in cfg["dpc"] for i in range(cfg["sets"])]
                planned = []
                for dpc, set_index, given in cells:
                    n_cell += 1
                    if n_cell % shard_n != shard_k:  # another shard's set
                        continue
                    if self.only is not None and not any(
                            (task.name, spec.label, learner, dpc, set_index, init) in self.only
                            for learner in learners for init in range(cfg["inits"])):
                        continue
                    ident = self.set_identity(data, spec, dpc, set_index)
                    if given is not None:  # a given set is what it holds: an edited file redoes its runs
                        ident["content_hash"] = given.content_hash()
                    set_hash = stable_hash(ident)
                    runs = []
                    for learner in learners:
                        for init in range(cfg["inits"]):
                            if self.only is not None and (task.name, spec.label, learner, dpc, set_index,
                                                          init) not in self.only:
                                continue
                            run_ident = self.run_identity(set_hash, learner, init)
                            path = self.run_path(task.name, spec.label, learner, dpc, set_index, init)
                            run_hash = stable_hash(run_ident)
                            record = read_result(path) if path.exists() else None  # read once, checked three ways
                            status = result_status(path, run_hash, fingerprint["id"], record)
                            if status == "no-fingerprint" and self._prove_data(path, data, record, write=False):
                                status = "done"
                                self._to_stamp.append((path, record))  # written by run(), not by planning
                            if status == "done" and self._model_changed(record, learner, method_models):
                                status = "other-model"
                            if status in CHANGED and self.overwrite == "only-missing":
                                why = REPLACING[status]
                                if status == "other-config" and not in_the_way:  # the example says what differs
                                    why += ": " + first_difference({**run_ident, "set_identity": ident},
                                                                   {k: v for k, v in record["config"].items()
                                                                    if k != "preset"},
                                                                   ("this run gives", "the result recorded"))
                                in_the_way.append((path, why))
                            runs.append(PlannedRun(learner, init, path, run_hash, run_ident, status))
                    planned.append(PlannedSet(dpc, set_index, given, ident, set_hash, runs))
                plan.append(PlannedMethod(task, data, load_s, spec, planned))
        if in_the_way:
            path, why = in_the_way[0]
            raise DilmbenchError(
                f"{len(in_the_way)} finished result(s) in {self.out} do not match this run "
                f"(e.g. {path}: {why}); use another --out, or --overwrite changed to replace them")
        return plan

    def run(self) -> dict:
        """Plan the grid, then make its sets and evaluate its runs. Several processes on one --out split the work:
        each takes a claim on what it makes (dilmbench.claims) and leaves the rest to the others."""
        from .claims import Claims

        self.claims = Claims(self.out)
        try:
            return self._run()
        finally:
            self.claims.release_all()

    def _run(self) -> dict:
        from .progress import progress
        from .provenance import device_info, environment_summary

        self.preflight()
        plan = self.plan()
        for path, record in self._to_stamp:  # planning writes nothing; the run does, once it goes ahead
            atomic_write_text(path, json.dumps(record, indent=1, sort_keys=False) + "\n")
        if not self.sets_only:
            self._warn_unfit(plan)
        cfg = self.cfg
        workers = None
        if (self.workers > 1 or self.executor == "ray") and not self.sets_only and any(
                r.status in REDO[self.overwrite] for pm in plan for c in pm.cells for r in c.runs):
            from .registry import loaded_plugins
            from .workers import LocalWorkers, RayWorkers

            if self.executor == "ray":
                workers = RayWorkers(self.ray_address, self.threads_per_worker, loaded_plugins(),
                                     num_cpus=self.workers if self.workers > 1 else None,
                                     gpu=str(self.device).startswith("cuda"))
            else:
                workers = LocalWorkers(self.workers, self.threads_per_worker, loaded_plugins())
        env = environment_summary()
        dev = device_info(self.device)
        split = cfg.get("score_split", "eval")
        open_bars: list = []
        for pm in plan:
            task, data, load_s, spec, planned = pm.task, pm.data, pm.load_s, pm.spec, pm.cells
            ectx = EvalContext(data=data, device=self.device, cache_dir=self.cache_dir, progress=self.progress,
                               split=split)
            method = self.methods[spec.label]
            mctx = MethodContext(data=data, encoder=cfg["encoder"], pooling=cfg["pooling"], device=self.device,
                                 cache_dir=self.cache_dir, progress=self.progress,
                                 embed_dtype=cfg.get("embed_dtype", "float32"))
            prepared = {"done": False, "seconds": 0.0}
            groups: dict = {}  # --batch-runs: runs waiting for their batch, per (DPC, learner)
            bar = progress(total=sum(len(cell.runs) for cell in planned), desc=f"{task.name}/{spec.label} runs",
                           enabled=self.progress)
            for cell in planned:
                dpc, set_index, ident, set_hash = cell.dpc, cell.set_index, cell.identity, cell.config_hash
                todo = [r for r in cell.runs if r.status in REDO[self.overwrite]]
                self._left_to_others = 0
                if not self.sets_only:
                    todo = self._claim(todo, bar)
                for r in todo:
                    if r.status in REPLACING:  # said, never silent
                        self.log(f"replacing {r.path}: {REPLACING[r.status]}")
                self.counts["skipped"] += len(cell.runs) - len(todo) - self._left_to_others
                bar.update(len(cell.runs) - len(todo) - self._left_to_others)
                if not todo:
                    self._backfill_card(cell, spec, mctx)
                    continue
                where = self._seed_parts(method, spec, cell)
                set_seed = derive_seed(cfg["seed"], task.name, *where)
                prepared_before = prepared["seconds"]
                ts, set_file, make_s = self._textset(cell.given, method, spec, mctx, dpc, set_index, set_seed, set_hash, ident, prepared)
                self._add_phase("method prepare", prepared["seconds"] - prepared_before)
                self._add_phase("make set", make_s)
                if self.sets_only:
                    self.counts["not_evaluated"] += len(todo)
                    bar.update(len(todo))
                    continue
                made = MadeSet(task=task, data=data, spec=spec, method=method, cell=cell,
                               seeded_by_content=where[0] == "content", set_seed=set_seed, ts=ts, set_file=set_file,
                               env=env, device=dev, bar=bar,
                               timing={"data_load": load_s, "method_prepare": prepared["seconds"], "make_set": make_s},
                               threads=workers.threads if workers is not None else dev.get("torch_threads"))
                for r in todo:
                    init_seed = derive_seed(cfg["seed"], task.name, *where, r.init)
                    why = self.evaluator.check_fits(ectx, ts, r.learner, init_seed)
                    if why:
                        self._skip_unfit(r, why, bar)
                        continue
                    self._evaluate_or_queue(PendingRun(made, r, init_seed), groups, ectx, workers, split)
                if workers is not None:
                    for done in workers.harvest():
                        self._finish(*done)
            for group in groups.values():  # the last, partial batches of this task and method
                self._dispatch(group, ectx, workers, task, data, split)
            groups.clear()
            if workers is None:
                bar.close()
            else:  # its runs still out: the next method's runs join the queue behind them (no worker idles at the
                open_bars.append(bar)  # end of a method whose last round has fewer runs than workers)
        while workers is not None and workers.pending:
            for done in workers.harvest(block=True):
                self._finish(*done)
        for bar in open_bars:
            bar.close()
        if workers is not None:
            workers.close()
        self.evaluator.close()
        return self.counts

    def _warn_unfit(self, plan) -> None:
        """Before anything is made: the cells whose runs the evaluator expects not to fit their learner, said once
        each (check_fits still decides run by run, on the set itself)."""
        from .api import Evaluator

        if type(self.evaluator).expected_unfit is Evaluator.expected_unfit:
            return
        from .cost import context_for

        contexts: dict = {}  # per task: the cost model's view of its data (read once, whatever the methods)
        for pm in plan:
            cells = sorted({(c.dpc * pm.task.num_labels if c.given is None else len(c.given), c.dpc, r.learner)
                            for c in pm.cells for r in c.runs if r.status in REDO[self.overwrite]})
            for size, dpc, learner in cells:
                if pm.task.name not in contexts:
                    contexts[pm.task.name] = context_for(pm.data, str(self.device), self.cfg["encoder"])
                cctx = contexts[pm.task.name]
                why = self.evaluator.expected_unfit(cctx, size, learner)
                if why:
                    self.log(f"warning: {pm.task.name} {pm.spec.label} DPC {dpc} on {learner}: {why}; runs whose "
                             "prompt does not fit will be skipped and listed at the end")

    def _skip_unfit(self, r: "PlannedRun", why: str, bar) -> None:
        key = self._key(r.path)
        self.unfit.append(f"{key}: {why}")
        self.claims.release(key)
        self.counts["unfit"] = self.counts.get("unfit", 0) + 1
        bar.update(1)

    @staticmethod
    def _seed_parts(method, spec, cell) -> tuple:
        """What a set's seeds derive from: (method, DPC, set index), or for a given set whose method seeds by content
        (file: sets), the set's content, so that its runs do not depend on the folder's name or the file's place."""
        if cell.given is not None and method.config.get("seed_by") == "content":
            return ("content", cell.given.content_hash())
        return (spec.label, cell.dpc, cell.set_index)

    def _claim(self, todo: list, bar) -> list:
        """The runs of ``todo`` this process takes; the ones another process holds are left to it (and counted), and
        one another process finished since the plan was made is skipped."""
        mine, self._left_to_others = [], 0
        for r in todo:
            if not self.claims.take(self._key(r.path)):
                self._left_to_others += 1
                self.counts["left_to_others"] = self.counts.get("left_to_others", 0) + 1
                bar.update(1)
            elif r.status == "missing" and result_status(r.path, r.config_hash) == "done":
                self.claims.release(self._key(r.path))  # finished by another process meanwhile
                self._left_to_others += 1
                self.counts["left_to_others"] = self.counts.get("left_to_others", 0) + 1
                bar.update(1)
            else:
                mine.append(r)
        return mine

    def _key(self, path: Path) -> str:
        return str(Path(path).relative_to(self.out))

    def _evaluate_or_queue(self, p: "PendingRun", groups: dict, ectx, workers, split: str) -> None:
        """One run: evaluated here, handed to a worker, or (--batch-runs) queued per (DPC, learner) until its batch
        is full."""
        r, task, data, ts = p.run, p.made.task, p.made.data, p.made.ts
        if self.batch_runs > 1:
            key = (p.made.cell.dpc, r.learner)
            groups.setdefault(key, []).append(p)
            if len(groups[key]) == self.batch_runs:
                self._dispatch(groups.pop(key), ectx, workers, task, data, split)
        elif workers is None:
            t0 = time.perf_counter()
            res = self.evaluator.evaluate(ectx, ts, r.learner, p.init_seed)
            self._finish(p, res, time.perf_counter() - t0, 0)
        else:
            workers.submit(self._job(task, data, split, ts, r.learner, p.init_seed), p)

    def _job(self, task, data, split, ts, learner, seed) -> dict:
        from .config import evaluator_options

        cfg = self.cfg
        return {"evaluator": (cfg["evaluator"], cfg.get("preset"), evaluator_options(cfg)), "task": task.name,
                "data": (data.source, cfg["dev_size"], cfg["dev_seed"]), "split": split, "device": self.device,
                "cache_dir": str(self.cache_dir), "textset": ts, "learner": learner, "seed": seed}

    def _dispatch(self, pending: list["PendingRun"], ectx, workers, task, data, split) -> None:
        """Several runs at once (--batch-runs): evaluate_many here, or one job for a worker; each run's result is
        written when its batch is back, so a kill loses only the batches in flight."""
        if not pending:
            return
        if workers is None:
            t0 = time.perf_counter()
            results = self.evaluator.evaluate_many(ectx, [(p.made.ts, p.run.learner, p.init_seed) for p in pending])
            self._finish_many(pending, results, time.perf_counter() - t0, 0)
        else:
            jobs = [self._job(task, data, split, p.made.ts, p.run.learner, p.init_seed) for p in pending]
            workers.submit({**jobs[0], "runs": jobs}, pending)
            for done in workers.harvest():
                self._finish(*done)

    def _finish_many(self, pending: list["PendingRun"], results: list[dict], total: float, retries: int) -> None:
        if len(results) != len(pending):
            raise DilmbenchError(f"evaluator '{self.evaluator.name}' returned {len(results)} results for "
                                 f"{len(pending)} runs")
        for p, res in zip(pending, results):
            self._finish(p, res, total / len(pending), retries)

    def _finish(self, p, res, total: float, retries: int) -> None:
        if isinstance(p, list):  # a worker's batch of runs
            return self._finish_many(p, res, total, retries)
        self._finish_one(p, res, total, retries)

    def _finish_one(self, p: "PendingRun", res: dict, total: float, retries: int) -> None:
        """A run's result, made here or in a worker, written as one complete file by the driver."""
        from .provenance import model_revision

        m, r, cfg = p.made, p.run, self.cfg
        task, data, spec, method, cell, ts = m.task, m.data, m.spec, m.method, m.cell, m.ts
        split = cfg.get("score_split", "eval")
        timing = {**m.timing, **{k: v for k, v in res.pop("timing_s", {}).items()}, "evaluate_total": total}
        inner = {k: v for k, v in timing.items() if k not in RUNNER_TIMINGS}
        for k, v in inner.items():
            self._add_phase(f"evaluate: {k}", v)
        self._add_phase("evaluate: other", total - sum(inner.values()))
        record = {
            "schema_version": SCHEMA_VERSION,
            "task": task.name, "method": spec.label, "method_name": spec.name, "dpc": cell.dpc,
            "set_index": cell.set_index, "init_index": r.init,
            "evaluator": self.evaluator.name, "learner": r.learner,
            "score": res.pop("score"), "metrics": res,
            "scored_on": {"split": split, "name": task.eval_split if split == "eval" else "dev (carved from train)",
                          "size": len(getattr(data, split))},
            "seeds": {"base": cfg["seed"], "set": m.set_seed, "init": p.init_seed,
                      "derivation": ("sha256(base|task|content|<set content hash>[|init])[:4] & 0x7fffffff"
                                     if m.seeded_by_content else
                                     "sha256(base|task|method|dpc|set[|init])[:4] & 0x7fffffff")},
            "config_hash": r.config_hash, "set_config_hash": cell.config_hash,
            "config": {**r.identity, "set_identity": cell.identity, "preset": cfg.get("preset")},
            "textset": {"path": os.path.relpath(m.set_file, self.out), "content_hash": ts.content_hash(),
                        "size": len(ts), "class_counts": ts.class_counts(task.num_labels),
                        "weighted": ts.weights is not None},
            "models": {"learner": {"id": r.learner, "revision": model_revision(r.learner)},
                       **({"encoder": {"id": cfg["encoder"], "revision": model_revision(cfg["encoder"]),
                                       "pooling": cfg["pooling"], **embed_identity(cfg)}}
                          if method.needs_embeddings else {})},
            "data": {**data.provenance(), "fingerprint": data.fingerprint()},
            "environment": m.env, "device": m.device, "timing_s": timing,
            "execution": {"executor": self.executor, "workers": self.workers,
                          "threads_per_worker": m.threads, "retries": retries,
                          **({"batch_runs": self.batch_runs} if self.batch_runs > 1 else {})},
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_text(r.path, json.dumps(record, indent=1, sort_keys=False) + "\n")
        self.claims.release(self._key(r.path))
        self.counts["done"] += 1
        m.bar.update(1)
        m.bar.set_postfix(score=f"{record['score']:.3f}")

    def _add_phase(self, name: str, seconds: float) -> None:
        if seconds > 0:
            self.phases[name] = self.phases.get(name, 0.0) + seconds

    def _textset(self, given, method, spec, mctx, dpc, set_index, seed, set_hash, ident, prepared):
        """The set for (method, dpc, set_index): given, reused from disk when its config hash matches, or made."""
        path = self.set_path(mctx.task.name, spec.label, dpc, set_index)
        t0 = time.perf_counter()
        card = None
        if given is not None:
            ts = given
        else:
            ts, meta = self._stored_set(path, set_hash, mctx.task) if self.overwrite != "always" else (None, None)
            if ts is None and self.overwrite != "always" and not self.claims.wait(
                    self._key(path), lambda: self._stored_set(path, set_hash, mctx.task)[0] is not None):
                ts, meta = self._stored_set(path, set_hash, mctx.task)  # another process made it meanwhile
            if ts is not None:
                card = meta.get("card")  # a reused set keeps the card it was saved with
                self.counts["sets_reused"] += 1
            else:
                if spec.label in self.no_make:
                    raise DilmbenchError(f"{path}: no set made under this configuration to reuse (missing, or made "
                                         f"under another configuration than declared); {spec.label}'s sets are not "
                                         "written again here")
                if not prepared["done"]:
                    tp = time.perf_counter()
                    method.prepare(mctx)
                    prepared["done"], prepared["seconds"] = True, time.perf_counter() - tp
                    t0 = time.perf_counter()
                ts = method.make_set(mctx, dpc, seed, set_index)
                if not isinstance(ts, TextSet):
                    raise DilmbenchError(f"method '{spec.label}' returned {type(ts).__name__}, not a TextSet")
                self.counts["sets_made"] += 1
        ts.validate(mctx.task)
        ts.provenance = {**ts.provenance, "set_config_hash": set_hash, "set_identity": ident}
        save_textset(ts, path, card=card or set_card(ts, mctx.data, self.cache_dir))
        self.claims.release(self._key(path))
        return ts, path, time.perf_counter() - t0

    @staticmethod
    def _stored_set(path: Path, set_hash: str, task) -> tuple[TextSet | None, dict | None]:
        """The set saved at ``path`` and its sidecar, if it was made under ``set_hash`` and is intact (not edited or
        truncated since); else (None, None)."""
        try:
            meta = json.loads(meta_path(path).read_text())
            if meta.get("provenance", {}).get("set_config_hash") != set_hash:
                return None, None
            ts = load_textset(path, task)
        except (OSError, ValueError, DilmbenchError):
            return None, None
        return (ts, meta) if ts.content_hash() == meta.get("content_hash") else (None, None)

    @staticmethod
    def _model_changed(record: dict | None, learner: str, method_models: dict) -> bool:
        """Whether a finished result was made with another snapshot of its learner or encoder than the one that would
        be loaded now (both revisions known and different). A result from before revisions were recorded (None)
        cannot be checked: `dilmbench validate` lists it."""
        from .provenance import model_revision

        models = (record or {}).get("models") or {}
        for key, model_id in {"learner": learner, **method_models}.items():
            recorded = (models.get(key) or {}).get("revision")
            now = model_revision(model_id)
            if recorded and now and recorded != now:
                return True
        return False

    @staticmethod
    def _prove_data(path: Path, data, record: dict | None = None, write: bool = True) -> bool:
        """A finished result from before results recorded their data's fingerprint keeps its place only if its data
        is provably the data read now: the package's embedded files, unchanged since the git commit the result
        records. Then it gets the fingerprint (and says how it got it; with ``write`` False the caller writes it
        later, as ``run`` does after planning); anything else must be made again."""
        from .provenance import embedded_files_unchanged
        from .tasks import EMBEDDED_DIR

        record = read_result(path) if record is None else record
        if record is None or data.source != "embedded" or (record.get("data") or {}).get("source") != "embedded":
            return False
        commit = (record.get("environment") or {}).get("git_commit")
        root = EMBEDDED_DIR.parents[2]  # the repository: bench/data/glue -> .
        files = tuple(str(p.relative_to(root)) for p in sorted((EMBEDDED_DIR / data.task.hub_config).glob("*.parquet")))
        if not embedded_files_unchanged(commit, files):
            return False
        record["data"] = {**record["data"], "fingerprint": data.fingerprint(),
                          "fingerprint_source": f"added later: the embedded data files at commit {commit} are the "
                                                f"files read now (equal git blobs)"}
        if write:
            atomic_write_text(path, json.dumps(record, indent=1, sort_keys=False) + "\n")
        return True

    def _backfill_card(self, cell, spec, mctx) -> None:
        """A finished cell's set file written before sets had cards gets its card, and a card of an older version the
        fields added since (contamination); nothing else changes."""
        from .cards import CARD_VERSION, contamination

        path = self.set_path(mctx.task.name, spec.label, cell.dpc, cell.set_index)
        ts, meta = self._stored_set(path, cell.config_hash, mctx.task)
        if ts is None:
            return
        if "card" not in meta:
            meta["card"] = set_card(ts, mctx.data, self.cache_dir)
        elif meta["card"].get("card_version", 1) < CARD_VERSION:
            meta["card"] = {**meta["card"], **contamination(ts, mctx.data), "card_version": CARD_VERSION}
        else:
            return
        atomic_write_text(meta_path(path), json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
