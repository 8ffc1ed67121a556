"""A results folder's declared grid: the `dilmbench run` configurations that make it, kept in the folder as
``grid.yaml``.

::

    # results/quick-sst2/grid.yaml
    runs:
      - {preset: quick, tasks: [sst2], methods: [random, kcenters, herding], dpc: [5, 10, 20], sets: 10}
      - {preset: quick, tasks: [sst2], methods: [random, kcenters], dpc: [5], sets: 20,
         note: "DPC 5 at 20 sets"}

Each entry is what a `dilmbench run --config` file holds (any preset, option or ``evaluator_options`` /
``method_options``), plus an optional ``note``. ``dilmbench run --config FOLDER/grid.yaml`` makes (or completes)
every entry into FOLDER; ``dilmbench validate FOLDER`` checks the folder against the declaration (declared runs that
are missing, files no entry declares); ``dilmbench reproduce FOLDER`` re-runs a sample of the declared runs. Where
the data lives is not declared (it differs between machines): give ``--data-dir`` or ``$DILMBENCH_DATA_DIR``; every
result's data fingerprint says whether it is the same data.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DilmbenchError

GRID_FILE = "grid.yaml"
# what an entry may not set: where results go is the folder itself, and where data lives is the machine's business
NOT_DECLARED = {"out": "the folder holding grid.yaml is where its runs go",
                "data_dir": "where the data lives differs between machines: give --data-dir or $DILMBENCH_DATA_DIR",
                "data-dir": "where the data lives differs between machines: give --data-dir or $DILMBENCH_DATA_DIR"}


@dataclass
class DeclaredRun:
    """One run a declaration asks for: its entry, and the file it writes (relative to the folder)."""

    entry: int
    task: str
    method: str  # the label the run is filed under (the method name; file:DIR gives its folder's name)
    evaluator: str
    learner: str
    dpc: int
    set_index: int
    init: int
    relpath: str


def grid_path(folder: str | Path) -> Path:
    return Path(folder) / GRID_FILE


def is_grid_file(path: str | Path) -> bool:
    """Whether a --config file is a grid declaration (a mapping with ``runs``) rather than one run's options."""
    from .config import load_yaml

    return "runs" in load_yaml(path)


def load_entries(path: str | Path) -> list[dict]:
    """The declaration's entries, each a run config file's mapping (without its ``note``); malformed ones stop here
    with the entry's number."""
    from .config import load_yaml

    data = load_yaml(path)
    runs = data.get("runs")
    extra = sorted(set(data) - {"runs", "description"})
    if extra:
        raise DilmbenchError(f"{path}: unknown top-level key(s) {extra}; a grid file holds 'runs' (and 'description')")
    if not isinstance(runs, list) or not runs:
        raise DilmbenchError(f"{path}: 'runs' must be a non-empty list of run configurations")
    entries = []
    for i, entry in enumerate(runs, 1):
        if not isinstance(entry, dict):
            raise DilmbenchError(f"{path}: entry {i} of 'runs' must be a mapping of option: value, got {entry!r}")
        bad = sorted(k for k in entry if k in NOT_DECLARED)
        if bad:
            raise DilmbenchError(f"{path}: entry {i} sets '{bad[0]}': {NOT_DECLARED[bad[0]]}")
        entries.append({k: v for k, v in entry.items() if k != "note"})
    return entries


def entry_configs(path: str | Path, data_source: str | None = None, device: str | None = None) -> list[dict]:
    """Each entry as a full run config (preset, then the entry, then the machine's data source and device)."""
    from .config import build_config

    configs = []
    for i, entry in enumerate(load_entries(path), 1):
        try:
            configs.append(build_config(None, None, {"data_source": data_source, "device": device}, file_cfg=entry))
        except DilmbenchError as exc:
            raise DilmbenchError(f"{path}: entry {i}: {exc}") from exc
    return configs


def declared_runs(path: str | Path) -> list[DeclaredRun]:
    """Every run the declaration asks for, in entry order; a run two entries both declare is an error (they would
    fight over its file)."""
    from .config import build_evaluator
    from .record import run_relpath
    from .registry import METHODS

    out, seen = [], {}
    for i, cfg in enumerate(entry_configs(path), 1):
        ev = build_evaluator(cfg)
        split = cfg.get("score_split", "eval")
        for method in cfg["methods"]:
            if ":" in method:  # a given set's DPC and count are what its folder holds: not predicted here
                raise DilmbenchError(f"{path}: entry {i} names '{method}'; a declaration lists methods that make "
                                     "their sets (copy given sets into the folder's sets/ and declare their method)")
            fixed_dpc = getattr(METHODS.get(method), "fixed_dpc", None)
            for task in cfg["tasks"]:
                for learner in ev.learners():
                    for dpc in cfg["dpc"] if fixed_dpc is None else [fixed_dpc]:
                        for s in range(cfg["sets"]):
                            for init in range(cfg["inits"]):
                                rel = str(run_relpath(split, task, method, ev.name, learner, dpc, s, init))
                                if rel in seen:
                                    raise DilmbenchError(f"{path}: entries {seen[rel]} and {i} both declare {rel}")
                                seen[rel] = i
                                out.append(DeclaredRun(i, task, method, ev.name, learner, dpc, s, init, rel))
    return out


def check_configurations(folder: str | Path, data_source: str | None = None) -> list[dict]:
    """`validate --deep`: plan every declared entry against the folder as `dilmbench run` would (data loaded, every
    run's identity computed; nothing written) and name each result that is there but was not made as declared
    (another configuration, other data, another model snapshot, or not a complete result) -> validate's problems."""
    from .runner import REPLACING, Runner

    problems = []
    folder = Path(folder)
    for i, cfg in enumerate(entry_configs(grid_path(folder), data_source), 1):
        runner = Runner(cfg, folder, overwrite="never", progress=False, log=lambda m: None)
        runner.build()
        for planned in (pm.cells for pm in runner.plan()):
            for ps in planned:
                for run in ps.runs:
                    if run.status not in ("done", "missing"):
                        problems.append({"check": "declared", "path": str(run.path.relative_to(folder)),
                                         "detail": f"not as entry {i} of {GRID_FILE} declares: {REPLACING[run.status]}"})
    return problems


def check_declared_identities(folder: str | Path, declared: list[DeclaredRun], records: dict) -> list[dict]:
    """Each finished declared run against the identity its entry gives it now, on the data the run itself recorded
    (nothing loaded, so this runs on every validate; ``--deep`` also checks the data and the model snapshots): a
    result made under options its entry no longer states (a method option whose default changed since, say) would
    otherwise pass as declared. ``records`` maps a run's path (relative to the folder) to its result -> problems."""
    from .cache import first_difference, stable_hash
    from .runner import Runner

    folder = Path(folder)
    configs = entry_configs(grid_path(folder))
    runners: dict = {}
    problems = []
    for d in declared:
        rec = records.get(d.relpath)
        if rec is None or not isinstance(rec.get("config"), dict):
            continue  # missing, or unreadable: validate's other checks say so
        if d.entry not in runners:
            runners[d.entry] = Runner(configs[d.entry - 1], folder, overwrite="never", progress=False,
                                      log=lambda m: None)
            runners[d.entry].build()
        runner = runners[d.entry]
        spec = next(s for s in runner.specs if s.label == d.method)
        task = next(t for t in runner.tasks if t.name == d.task)
        got = {k: v for k, v in rec["config"].items() if k != "preset"}
        recorded_set = got.get("set_identity", {})
        ident = runner.set_identity_on(task, recorded_set.get("data"), spec, d.dpc, d.set_index)
        if "content_hash" in recorded_set:  # a given set: its content is checked against the run (the set check)
            ident["content_hash"] = recorded_set["content_hash"]
        want = {**runner.run_identity(stable_hash(ident), d.learner, d.init), "set_identity": ident}
        if not runner.evaluator.learner_identity_known(d.learner):  # (it needs the model: left to --deep)
            want.pop("learner_identity", None)
            if "learner_identity" in got:
                want["learner_identity"] = got["learner_identity"]
        if stable_hash(want) != stable_hash(got):
            problems.append({"check": "declared", "path": d.relpath,
                             "detail": f"not as entry {d.entry} of {GRID_FILE} states: "
                                       f"{first_difference(want, got, ('the entry gives', 'the run recorded'))}"})
    return problems
