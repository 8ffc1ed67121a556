"""The same grid three ways, side by side: one process with 2 torch threads, 2 local workers x 1 thread, and Ray
with 2 CPUs (1 thread per task). Prints wall time, speed-up over the first, and whether every score is bit-identical
across the three (seeds come from each run's identity, never from order or worker).

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/grid_executors.py [--methods random,kcenters,herding] [--dpc 5,10,20]
       [--sets 5] [--steps 200] [--no-ray] [--keep DIR [--ways 1,3]]
(the issue's benchmark is the defaults: the quick SST-2 grid, 45 runs per executor)

The defaults took 2,979-3,347 s a way here (results/benchmarks/grid_executors.txt), 9,317 s for the three plus a few
minutes' untimed warm step, longer than one sitting at this machine. With --keep DIR every way's results and
its measurement (wall time, date, CPU, torch) are kept in DIR, a way measured before is not run again, and --ways
picks which ways to measure now; the table then says when and where each way was measured, so ways measured in
different sessions are never passed off as one sitting. Nothing else may run on the machine while a way is timed.
Without --keep everything runs in one go in a temporary folder. The committed measurement:

    HF_HUB_OFFLINE=1 python benchmarks/speed/grid_executors.py --keep results/benchmarks/grid_executors --ways 2   # a sitting
    HF_HUB_OFFLINE=1 python benchmarks/speed/grid_executors.py --keep results/benchmarks/grid_executors --ways 3   # another
    HF_HUB_OFFLINE=1 python benchmarks/speed/grid_executors.py --keep results/benchmarks/grid_executors --ways 1   # another
    HF_HUB_OFFLINE=1 python benchmarks/speed/grid_executors.py --keep results/benchmarks/grid_executors   # the table again
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from dilmbench.provenance import git_commit, package_versions
from dilmbench.textset import atomic_write_text

WAYS = [("1 process x 2 threads", ["--workers", "1"], {"OMP_NUM_THREADS": "2"}),
        ("2 workers x 1 thread", ["--workers", "2", "--threads-per-worker", "1"], {"OMP_NUM_THREADS": "1"}),
        ("Ray, 2 CPUs x 1 thread", ["--executor", "ray", "--workers", "2", "--threads-per-worker", "1"],
         {"OMP_NUM_THREADS": "1"})]


def scores(out: Path) -> dict:
    return {str(p.relative_to(out)): json.loads(p.read_text())["score"] for p in sorted((out / "runs").rglob("*.json"))}


def train_seconds(out: Path) -> float:
    """Seconds spent training, summed over the runs (each run's own clock, whatever ran beside it)."""
    return sum(json.loads(p.read_text())["timing_s"]["train"] for p in (out / "runs").rglob("*.json"))


def folder(way: str) -> str:
    return way.replace(" ", "_").replace(",", "")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> dict:
    return {"cpus": os.cpu_count(), "cpu": cpu_name(), "git_commit": git_commit(), **package_versions()}


def measure(base: list[str], name: str, extra: list[str], env: dict, out: Path) -> dict:
    command = base + extra + ["--out", str(out)]
    where = machine()  # before the run: the code measured is the code at its start
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **env})
    if proc.returncode != 0:
        sys.exit(f"{name}: dilmbench run failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return {"way": name, "seconds": time.perf_counter() - t0, "started": started, "runs": len(scores(out)),
            "command": command, "env": env, "machine": where}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="random,kcenters,herding")
    ap.add_argument("--dpc", default="5,10,20")
    ap.add_argument("--sets", default="5")
    ap.add_argument("--steps", default="200")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--keep", type=Path, help="keep each way's results and measurement here; measure only the missing")
    ap.add_argument("--ways", default=None, help="with --keep: which ways to measure now, 1-based (e.g. 1,3)")
    a = ap.parse_args()
    ways = WAYS[:2] if a.no_ray else WAYS
    todo = set(range(len(ways)))
    if a.ways is not None:
        if a.keep is None:
            sys.exit("--ways needs --keep DIR (the other ways' measurements are read from there)")
        try:
            todo = {int(w) - 1 for w in a.ways.split(",")}
        except ValueError:
            sys.exit(f"--ways takes 1-based way numbers such as 1,3, got {a.ways!r}")
        if not todo <= set(range(len(ways))):
            sys.exit(f"--ways: there are {len(ways)} ways (1-{len(ways)}), got {a.ways!r}")
    base = ["dilmbench", "run", "--preset", "quick", "--task", "sst2", "--methods", a.methods, "--dpc", a.dpc,
            "--sets", a.sets, "--steps", a.steps, "--no-progress"]
    grid = {"methods": a.methods, "dpc": a.dpc, "sets": a.sets, "steps": a.steps}

    sitting = datetime.now(timezone.utc).isoformat(timespec="seconds")  # ways measured by this one invocation
    with tempfile.TemporaryDirectory() as tmp:
        root = a.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        stamp = root / "grid.json"
        if stamp.exists() and json.loads(stamp.read_text()) != grid:
            sys.exit(f"{root} holds measurements of another grid ({json.loads(stamp.read_text())}); use another --keep")
        atomic_write_text(stamp, json.dumps(grid))
        measured = {}
        for i, (name, extra, env) in enumerate(ways):
            out = root / folder(name)
            record = out.with_suffix(".json")
            if record.exists():
                measured[i] = json.loads(record.read_text())
                continue
            if i not in todo:
                continue
            if out.exists():  # a way cut off earlier: its timing is void, so it starts again from nothing
                shutil.rmtree(out)
            # sets and pool embeddings are made once beforehand (in this sitting: the caches do not outlive a machine),
            # so every way times the evaluation runs alone
            warm = Path(tmp) / "warm"
            if not warm.exists():
                subprocess.run(base + ["--out", str(warm), "--steps", "1"], check=True, capture_output=True)
            measured[i] = {**measure(base, name, extra, env, out), "sitting": sitting}
            atomic_write_text(record, json.dumps(measured[i], indent=1))

        print(f"grid: sst2 x {a.methods} x DPC {a.dpc} x {a.sets} sets, {a.steps} steps")
        if not measured:
            print("  nothing measured yet")
            return
        first = measured.get(0, {}).get("seconds")
        sittings = {m.get("sitting", m["started"]) for m in measured.values()}  # records before "sitting": one each
        for i, (name, _, _) in enumerate(ways):
            if i not in measured:
                print(f"  {name:26s}   not measured yet")
                continue
            m = measured[i]
            speed = f"speed-up {first / m['seconds']:4.2f}x" if first else "speed-up -"
            where = f"{m['machine']['cpus']} CPUs, {m['machine']['cpu']}, torch {m['machine']['torch']}"
            train = train_seconds(root / folder(name))
            print(f"  {name:26s} {m['seconds']:8.0f} s  {m['runs']} runs  {speed}  training {train:5.0f} s summed over"
                  f" runs   measured {m['started']} ({where})")
        if len(sittings) > 1:
            print(f"  (measured in {len(sittings)} sittings, each way alone on the machine; the dates and CPUs above say"
                  " when and where)")
        commits = {m["machine"].get("git_commit") for m in measured.values()}
        if len(commits) > 1:  # a speed change between commits would read as an executor's speed-up
            print(f"  (measured at {len(commits)} commits of dilmbench: {', '.join(sorted(map(str, commits)))})")
        results = [scores(root / folder(ways[i][0])) for i in sorted(measured)]
        if len(results) < 2:
            return
        same = all(r == results[0] for r in results[1:])
        print(f"  scores bit-identical across the {len(results)}: {same}")
        if not same:
            diff = [k for k in results[0] if any(r.get(k) != results[0][k] for r in results[1:])]
            print(f"  differing runs: {len(diff)} (e.g. {diff[0]}: {[r.get(diff[0]) for r in results]})")
            sys.exit(1)


if __name__ == "__main__":
    main()
