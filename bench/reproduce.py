"""`dilmbench reproduce FOLDER`: re-run declared runs of a results folder from its own declaration (grid.yaml) in a
scratch folder, and say per run whether the score came out identical, within a stated tolerance, or different.

Nothing of the folder is reused except the sets of methods whose sets a generator model writes (``writes_texts``:
DiLM, ZeroGen, GOLD, S3): those are copied into the scratch folder and evaluated again, and the report says so per run.
Every other set is made again by today's code, so a changed selection shows as a changed set (its content hash) as
well as in the score. The last reproduction is kept in FOLDER/reproduce.json, which `dilmbench report` shows beside
what validate says.
"""
from __future__ import annotations

import json
import random
import shutil
import tempfile
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from .errors import DilmbenchError
from .grid import GRID_FILE, declared_runs, entry_configs, grid_path

REPORT_FILE = "reproduce.json"
VERDICTS = ("identical", "within tolerance", "different")


def choose(runs: list, present: set, sample: int | None, seed: int) -> list:
    """The declared runs to re-run: all that have a result in the folder, or ``sample`` of them drawn with ``seed``
    (in declaration order)."""
    have = [r for r in runs if r.relpath in present]
    if sample is None or sample >= len(have):
        return have
    if sample < 1:
        raise DilmbenchError(f"--sample must be at least 1, got {sample}")
    picked = set(id(r) for r in random.Random(seed).sample(have, sample))
    return [r for r in have if id(r) in picked]


def compare(old: dict, new: dict | None, tolerance: float) -> dict:
    """One run's verdict: the folder's record against the reproduction's (scores in points)."""
    if new is None:
        return {"verdict": "different", "why": "the re-run wrote no result", "diff": None}
    diff = 100.0 * (new["score"] - old["score"])
    same_config = new.get("config_hash") == old.get("config_hash")
    old_data = ((old.get("data") or {}).get("fingerprint") or {}).get("id")
    new_data = ((new.get("data") or {}).get("fingerprint") or {}).get("id")
    same_set = (new.get("textset") or {}).get("content_hash") == (old.get("textset") or {}).get("content_hash")
    why = []
    if not same_config:
        why.append("made under another configuration than the folder's result (the declaration does not describe it)")
    if old_data and new_data and old_data != new_data:
        why.append(f"on other data (fingerprint {new_data}, the folder's {old_data})")
    if not same_set:
        why.append("today's code made another set")
    if new["score"] == old["score"] and same_config:
        verdict = "identical"
    elif abs(diff) <= tolerance and same_config:
        verdict = "within tolerance"
    else:
        verdict = "different"
    return {"verdict": verdict, "why": "; ".join(why), "diff": diff, "same_set": same_set, "same_config": same_config}


def reproduce(folder: str | Path, sample: int | None = None, seed: int = 0, tolerance: float = 0.5,
              scratch: str | Path | None = None, data_source: str | None = None, device: str | None = None,
              progress: bool = False, log=print) -> dict:
    """Re-run the chosen declared runs into ``scratch`` (a new temporary folder, removed after, unless given) and
    compare; write FOLDER/reproduce.json and return the same report."""
    from .provenance import git_commit
    from .record import RunRecord, set_relpath
    from .runner import Runner
    from .textset import atomic_write_text, meta_path

    folder = Path(folder)
    if not folder.is_dir():
        raise DilmbenchError(f"no such results folder '{folder}'")
    gp = grid_path(folder)
    if not gp.is_file():
        raise DilmbenchError(f"{folder} declares no grid ({GRID_FILE} is missing): list the run configurations that "
                             "make it there first (see `dilmbench run --config`)")
    if tolerance < 0:
        raise DilmbenchError(f"--tolerance must be at least 0 points, got {tolerance}")
    runs = declared_runs(gp)
    configs = entry_configs(gp, data_source, device)
    present = {r.relpath for r in runs if (folder / r.relpath).is_file()}
    if not present:
        raise DilmbenchError(f"none of the {len(runs)} runs {gp} declares has a result in {folder}: nothing to compare")
    chosen = choose(runs, present, sample, seed)
    own_scratch = scratch is None
    scratch = Path(tempfile.mkdtemp(prefix="dilmbench-reproduce-")) if own_scratch else Path(scratch)
    if not own_scratch and scratch.exists() and any(scratch.iterdir()):
        raise DilmbenchError(f"scratch folder '{scratch}' is not empty: a reproduction starts from nothing")
    if scratch.resolve() == folder.resolve():
        raise DilmbenchError("the scratch folder must not be the folder being reproduced")
    rows = []
    try:
        by_entry: dict[int, list] = {}
        for r in chosen:
            by_entry.setdefault(r.entry, []).append(r)
        reused = set()
        for entry, rs in sorted(by_entry.items()):
            runner = Runner(configs[entry - 1], scratch, overwrite="only-missing", progress=progress, log=log,
                            only={(r.task, r.method, r.learner, r.dpc, r.set_index, r.init) for r in rs})
            runner.build()
            runner.no_make = {label for label, m in runner.methods.items() if getattr(m, "writes_texts", False)}
            for r in rs:
                if r.method not in runner.no_make:
                    continue
                rel = set_relpath(r.task, r.method, r.dpc, r.set_index)
                for src in (folder / rel, meta_path(folder / rel)):
                    if src.is_file():
                        (scratch / src.relative_to(folder)).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(src, scratch / src.relative_to(folder))
                reused.add(r.relpath)
            log(f"entry {entry}: re-running {len(rs)} run(s)")
            runner.run()
        for r in chosen:
            old = RunRecord.read(folder / r.relpath)
            new = RunRecord.read(scratch / r.relpath)
            if old is None:  # present when chosen, unreadable now: validate names it
                continue
            row = {"run": r.relpath, "entry": r.entry, "set": "reused from the folder" if r.relpath in reused
                   else "made again", "old": old.score, "new": None if new is None else new.score,
                   **compare(old.raw, None if new is None else new.raw, tolerance)}
            rows.append(row)
    finally:
        if own_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    counts = Counter(row["verdict"] for row in rows)
    report = {"folder": str(folder), "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "git_commit": git_commit(), "declared": len(runs), "with_result": len(present),
              "sample": sample, "seed": seed, "tolerance_points": tolerance, "reproduced": len(rows),
              "counts": {v: counts.get(v, 0) for v in VERDICTS}, "ok": counts.get("different", 0) == 0,
              "runs": rows}
    atomic_write_text(folder / REPORT_FILE, json.dumps(report, indent=1) + "\n")
    return report


def render(report: dict) -> str:
    from tabulate import tabulate

    body = [[r["run"].split("/", 2)[-1], r["set"], f"{100 * r['old']:.2f}",
             "-" if r["new"] is None else f"{100 * r['new']:.2f}",
             "-" if r["diff"] is None else f"{r['diff']:+.2f}", r["verdict"], r["why"]] for r in report["runs"]]
    c = report["counts"]
    which = "all" if report["sample"] is None else f"--sample {report['sample']} --seed {report['seed']}"
    head = (f"dilmbench reproduce {report['folder']}: {report['reproduced']} of {report['with_result']} declared runs "
            f"with a result re-run ({which}; tolerance {report['tolerance_points']} points)")
    tail = (f"{c['identical']} identical, {c['within tolerance']} within tolerance, {c['different']} different"
            + ("" if report["ok"] else ": NOT reproduced"))
    return "\n".join([head, tabulate(body, headers=["run", "set", "folder", "re-run", "diff (points)", "verdict",
                                                     "why"]), tail])


def last_reproduction(folder: str | Path) -> dict | None:
    """FOLDER/reproduce.json as written by the last `dilmbench reproduce`, or None."""
    path = Path(folder) / REPORT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
