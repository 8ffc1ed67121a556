"""`dilmbench validate`: checks a results folder as a whole, in the spirit of MLPerf's submission checker.

Every problem is one record {check, path, detail}; a folder passes when there is none. What is checked:
  * parse: every file under runs*/ is a complete dilmbench result of the current schema (a truncated file, a file of
    another schema or a foreign file is named);
  * provenance: seeds, config hash, model ids and revisions, package versions, git commit, device and the data's
    fingerprint are recorded;
  * split: runs/ holds only scores on the evaluation split and runs-<split>/ only scores on that split (what was
    scored on dev for choosing is kept apart);
  * cell: within a cell (task, evaluator, learner, method, DPC) every run shares one configuration and one data
    fingerprint, and no two runs share a seed;
  * set: every run's text set exists and its content hash is the one the run recorded;
  * grid: the grid is complete. With ``expect`` (the options of a `dilmbench run` command) every run that command
    would write must be there. Else, where the folder declares its grid (grid.yaml, dilmbench.grid), every declared
    run must be there, made as its entry states today (its identity on the data it recorded: an option whose default
    changed after the run must be pinned in the entry), and every result file must be declared. Without either, the grid the results imply (a guess):
    every method of a task x learner at every DPC any generated-set method there has, each with as many sets x inits
    as its fullest cell.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from .cache import stable_hash

PROVENANCE = {
    "seeds": lambda r: all(isinstance(r.get("seeds", {}).get(k), int) for k in ("base", "set", "init")),
    "config hash": lambda r: bool(r.get("config_hash")) and bool(r.get("set_config_hash")),
    "learner id and revision": lambda r: bool(r.get("models", {}).get("learner", {}).get("id"))
                                         and bool(r.get("models", {}).get("learner", {}).get("revision")),
    "package versions": lambda r: bool(r.get("environment", {}).get("versions", {}).get("dilmbench")),
    "git commit": lambda r: bool(r.get("environment", {}).get("git_commit")),
    "device": lambda r: bool(r.get("device", {}).get("device")),
    "data fingerprint": lambda r: bool((r.get("data") or {}).get("fingerprint", {}).get("id")),
}
REQUIRED = ("task", "method", "dpc", "set_index", "init_index", "evaluator", "learner", "score", "config",
            "textset")


def cell_configuration(rec: dict) -> str:
    """What every run of a cell must share: its identity less the set index, the init and the given set's content."""
    cfg = dict(rec.get("config", {}))
    ident = {k: v for k, v in cfg.pop("set_identity", {}).items() if k not in ("set_index", "content_hash")}
    for k in ("set", "init", "preset"):
        cfg.pop(k, None)
    return stable_hash({**cfg, "set_identity": ident})


def _problem(check: str, path, detail: str) -> dict:
    return {"check": check, "path": str(path), "detail": detail}


def validate(out: str | Path, expect: dict | None = None) -> dict:
    """-> {"ok", "results", "problems": [...], "missing": [...]} for the results folder ``out``."""
    out = Path(out)
    problems: list = []
    records = _read_results(out, problems)
    _check_cells(records, problems)
    _check_sets(out, records, problems)
    declared, missing, undeclared = _check_grid(out, records, expect, problems)
    return {"ok": not problems, "results": len(records), "problems": problems, "missing": missing,
            "declared": None if declared is None else len(declared), "undeclared": undeclared}


def _read_results(out: Path, problems: list) -> list[tuple[str, Path, dict]]:
    """Every file under runs*/ read as a result -> (split, path in the folder, record); what is not one is a problem."""
    from .record import SCHEMA_VERSION

    records = []
    run_dirs = sorted(p for p in out.glob("runs*") if p.is_dir()) if out.is_dir() else []
    if not out.is_dir():
        problems.append(_problem("parse", out, "no such results folder"))
    elif not run_dirs:
        problems.append(_problem("parse", out, "no runs/ folder: nothing has been run into it"))
    for rd in run_dirs:
        split = "eval" if rd.name == "runs" else rd.name[len("runs-"):]
        for path in sorted(p for p in rd.rglob("*") if p.is_file()):
            rel = path.relative_to(out)
            if path.suffix != ".json":
                problems.append(_problem("parse", rel, "a foreign file (not a result)"))
                continue
            try:
                rec = json.loads(path.read_text())
            except (OSError, ValueError):
                problems.append(_problem("parse", rel, "not valid JSON (truncated?)"))
                continue
            if not isinstance(rec, dict) or "schema_version" not in rec:
                problems.append(_problem("parse", rel, "a foreign file (JSON, but not a dilmbench result)"))
                continue
            if rec["schema_version"] != SCHEMA_VERSION:
                problems.append(_problem("parse", rel, f"schema {rec['schema_version']}, current is {SCHEMA_VERSION}"))
                continue
            lacking = [k for k in REQUIRED if k not in rec]
            if lacking:
                problems.append(_problem("parse", rel, f"lacks {', '.join(lacking)}"))
                continue
            for what, ok in PROVENANCE.items():
                if not ok(rec):
                    problems.append(_problem("provenance", rel, f"no {what} recorded"))
            # (results from before dev scoring existed name no split: everything was scored on eval then)
            scored = (rec.get("scored_on") or {}).get("split", "eval")
            if scored != split:
                problems.append(_problem("split", rel, f"scored on the {scored} split but stored under {rd.name}/ "
                                                       f"(which holds {split} scores only)"))
            records.append((split, rel, rec))
    return records


def _check_cells(records: list, problems: list) -> None:
    """One configuration and one data per cell, no seed twice."""
    cells = defaultdict(list)
    for split, rel, rec in records:
        cells[(split, rec["task"], rec["evaluator"], rec["learner"], rec["method"], rec["dpc"])].append((rel, rec))
    for key, runs in sorted(cells.items(), key=lambda kv: str(kv[0])):
        name = "/".join(str(k) for k in key)
        configs = {cell_configuration(r) for _, r in runs}
        if len(configs) > 1:
            problems.append(_problem("cell", name, f"{len(configs)} configurations in one cell of {len(runs)} runs "
                                                   f"(e.g. {runs[0][0]})"))
        datas = {((r.get("data") or {}).get("fingerprint") or {}).get("id") for _, r in runs}
        if len(datas) > 1:
            problems.append(_problem("cell", name, f"runs on {len(datas)} different data in one cell"))
        seen = {}
        for rel, r in runs:
            seed = r.get("seeds", {}).get("init")
            if seed in seen:
                problems.append(_problem("cell", rel, f"seed {seed} is also the seed of {seen[seed]}"))
            seen.setdefault(seed, rel)


def _check_sets(out: Path, records: list, problems: list) -> None:
    """Each run's set is there, and is what the run says it trained on."""
    from .tasks import TASKS
    from .textset import load_textset

    checked: dict[str, str | None] = {}
    for split, rel, rec in records:
        ts = rec["textset"]
        path = out / ts.get("path", "")
        if str(path) not in checked:
            if not ts.get("path") or not path.is_file():
                checked[str(path)] = None
            else:
                try:
                    checked[str(path)] = load_textset(path, TASKS[rec["task"]]).content_hash()
                except Exception:  # an unreadable set (or one of an unknown task) is as bad as a missing one
                    checked[str(path)] = None
        have = checked[str(path)]
        if have is None:
            problems.append(_problem("set", rel, f"its text set {ts.get('path')} is missing or unreadable"))
        elif have != ts.get("content_hash"):
            problems.append(_problem("set", rel, f"its text set {ts.get('path')} was changed after the run "
                                                 f"(content hash {have}, the run trained on {ts.get('content_hash')})"))


def _check_grid(out: Path, records: list, expect: dict | None, problems: list) -> tuple:
    """Against the folder's grid.yaml (declared runs missing, files not declared), else against ``expect`` or the
    grid the results imply -> (declared paths or None, missing, undeclared)."""
    from .grid import check_declared_identities, declared_runs, grid_path

    declared, undeclared = None, []
    if expect is None and grid_path(out).is_file():
        try:
            runs = declared_runs(grid_path(out))
            problems.extend(check_declared_identities(out, runs, {str(rel): rec for _, rel, rec in records}))
            declared = [d.relpath for d in runs]
        except Exception as exc:  # a declaration that cannot be read is the folder's problem, not validate's crash
            problems.append(_problem("grid", grid_path(out).name, f"cannot be read: {exc}"))
            declared = []
        wanted = set(declared)
        undeclared = [str(rel) for _, rel, _ in records if str(rel) not in wanted]
        have = {str(rel) for _, rel, _ in records}
        missing = [d for d in declared if d not in have]
        for m in missing:
            problems.append(_problem("grid", m, f"declared in {grid_path(out).name}, missing"))
        for u in undeclared:
            problems.append(_problem("grid", u, f"not declared in {grid_path(out).name}"))
    else:
        missing = _missing(out, records, expect)
        for m in missing:
            problems.append(_problem("grid", m, "missing"))
    return declared, missing, undeclared


def _missing(out: Path, records: list, expect: dict | None) -> list[str]:
    from .record import run_relpath

    have = {str(rel) for _, rel, _ in records}
    if expect is not None:
        want = [str(run_relpath(expect["split"], task, method, expect["evaluator"], learner, dpc, s, i))
                for task in expect["tasks"] for method in expect["methods"] for learner in expect["learners"]
                for dpc in expect["dpc"] for s in range(expect["sets"]) for i in range(expect["inits"])]
        return [w for w in want if w not in have]
    # the grid the results imply
    groups = defaultdict(lambda: defaultdict(dict))  # (split, task, evaluator, learner) -> method -> info
    for split, rel, rec in records:
        g = groups[(split, rec["task"], rec["evaluator"], rec["learner"])][rec["method"]]
        g.setdefault("dpc", set()).add(rec["dpc"])
        g["sets"] = max(g.get("sets", 0), rec["set_index"] + 1)
        g["inits"] = max(g.get("inits", 0), rec["init_index"] + 1)
        g["given"] = g.get("given", False) or "content_hash" in rec["config"].get("set_identity", {})
        g["method"] = rec["method"]
    want = []
    for (split, task, evaluator, learner), methods in groups.items():
        dpcs = set().union(*(m["dpc"] for m in methods.values() if not m["given"])) if methods else set()
        for m in methods.values():
            for dpc in sorted(dpcs if not m["given"] else m["dpc"]):
                for s in range(m["sets"]):
                    for i in range(m["inits"]):
                        want.append(str(run_relpath(split, task, m["method"], evaluator, learner, dpc, s, i)))
    return [w for w in want if w not in have]


def render_report(report: dict, show: int = 5) -> str:
    """Problems grouped by check and by what is wrong, with how many files and the first few of them."""
    against = (f", the {report['declared']} runs grid.yaml declares" if report.get("declared") is not None
               else "") + (", each planned as declared (--deep)" if report.get("deep") else "")
    if report["ok"]:
        return f"ok: {report['results']} results, every check passed{against}"
    lines = [f"{len(report['problems'])} problem(s) in {report['results']} results{against}:"]
    by = defaultdict(lambda: defaultdict(list))
    for p in report["problems"]:
        detail = p["detail"] if p["check"] in ("provenance", "grid", "parse", "declared") else "see each"
        by[p["check"]][detail].append(p)
    for check, details in by.items():
        for detail, ps in details.items():
            if detail == "see each":
                lines.extend(f"{check}: {p['path']}: {p['detail']}" for p in ps)
                continue
            lines.append(f"{check}: {detail}: {len(ps)} file(s)")
            lines.extend(f"  {p['path']}" for p in ps[:show])
            if len(ps) > show:
                lines.append(f"  ... and {len(ps) - show} more (--json lists all)")
    return "\n".join(lines)
