"""The same grid three ways, side by side: one process with 2 torch threads, 2 local workers x 1 thread, and Ray
with 2 CPUs (1 thread per task). Prints wall time, speed-up over the first, and whether every score is bit-identical
across the three (seeds come from each run's identity, never from order or worker).

Usage: HF_HUB_OFFLINE=1 python benchmarks/grid_executors.py [--methods random,kcenters,herding] [--dpc 5,10,20]
       [--sets 5] [--steps 200] [--no-ray]
(the issue's benchmark is the defaults: the quick SST-2 grid, 45 runs per executor)
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def scores(out: Path) -> dict:
    return {str(p.relative_to(out)): json.loads(p.read_text())["score"] for p in sorted((out / "runs").rglob("*.json"))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="random,kcenters,herding")
    ap.add_argument("--dpc", default="5,10,20")
    ap.add_argument("--sets", default="5")
    ap.add_argument("--steps", default="200")
    ap.add_argument("--no-ray", action="store_true")
    a = ap.parse_args()
    base = ["dilmbench", "run", "--preset", "quick", "--task", "sst2", "--methods", a.methods, "--dpc", a.dpc,
            "--sets", a.sets, "--steps", a.steps, "--no-progress"]
    ways = [("1 process x 2 threads", ["--workers", "1"], {"OMP_NUM_THREADS": "2"}),
            ("2 workers x 1 thread", ["--workers", "2", "--threads-per-worker", "1"], {"OMP_NUM_THREADS": "1"})]
    if not a.no_ray:
        ways.append(("Ray, 2 CPUs x 1 thread", ["--executor", "ray", "--workers", "2", "--threads-per-worker", "1"],
                     {"OMP_NUM_THREADS": "1"}))
    import os

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        # sets and pool embeddings are made once beforehand, so every executor times the evaluation runs alone
        subprocess.run(base + ["--out", f"{tmp}/warm", "--steps", "1"], check=True, capture_output=True)
        for name, extra, env in ways:
            out = Path(tmp) / name.replace(" ", "_")
            t0 = time.perf_counter()
            subprocess.run(base + extra + ["--out", str(out)], check=True, capture_output=True,
                           env={**os.environ, **env})
            secs = time.perf_counter() - t0
            results.append(scores(out))
            rows.append((name, secs, len(results[-1])))
    first = rows[0][1]
    print(f"grid: sst2 x {a.methods} x DPC {a.dpc} x {a.sets} sets, {a.steps} steps; {os.cpu_count()} CPUs")
    for name, secs, n in rows:
        print(f"  {name:26s} {secs:8.0f} s  {n} runs  speed-up {first / secs:4.2f}x")
    same = all(r == results[0] for r in results[1:])
    print(f"  scores bit-identical across the {len(rows)}: {same}")
    if not same:
        diff = [k for k in results[0] if any(r.get(k) != results[0][k] for r in results[1:])]
        print(f"  differing runs: {len(diff)} (e.g. {diff[0]}: {[r.get(diff[0]) for r in results]})")
        sys.exit(1)


if __name__ == "__main__":
    main()
