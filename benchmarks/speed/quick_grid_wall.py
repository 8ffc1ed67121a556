"""The quick SST-2 grid (random, kcenters, herding x DPC 5/10/20 x 5 sets: 45 runs) in one `dilmbench run` on 2 cores,
timed, and its scores against the float32 runs of the same sets.

As in benchmarks/speed/grid_executors.py (the 2,979-3,347 s it measured for the reference path), the sets and the pool's
embeddings are made first (`--sets-only`, untimed): the timed command evaluates the 45 runs. Nothing else may run on
the machine meanwhile.

Then each run is paired with a float32 run of the same text set (same content hash) and init, from the folders given
by --against, and the paired score difference (this grid minus float32) is printed per DPC: mean, std (ddof 0), the
largest, and how many runs were paired.

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/quick_grid_wall.py [--out results/benchmarks/quick_grid_fast]
       [--against results/benchmarks/grid_executors/1_process_x_2_threads,results/quick-sst2] [--report-only]
       [--record results/benchmarks/quick_grid_wall.json] [--compare ANOTHER_FOLDER_OF_THE_SAME_COMMAND]
Writes results/benchmarks/quick_grid_wall.json ({"runs", "wall_s", "command", "commit", ...}).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dilmbench.provenance import git_commit, package_versions
from dilmbench.textset import atomic_write_text

ROOT = Path(__file__).resolve().parents[2]
# --embed-dtype float32: the sets the float32 runs were trained on (content hashes), so the pairing below compares
# fine-tuning and nothing else (the quick preset's default bf16 encoder pass picks some other rows)
COMMAND = ["dilmbench", "run", "--preset", "quick", "--task", "sst2", "--methods", "random,kcenters,herding",
           "--dpc", "5,10,20", "--sets", "5", "--embed-dtype", "float32", "--no-progress", "--workers", "2",
           "--threads-per-worker", "1"]


def runs(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((folder / "runs").rglob("*.json"))]


def key(r: dict) -> tuple:
    """What makes two runs the same run but for how they were trained: the set's content, the learner and the init's
    seed (herding's set is the same for every set index; its runs differ by seed)."""
    return r["textset"]["content_hash"], r["learner"], r["seeds"]["init"]


def paired(new: list[dict], against: list[Path]) -> dict:
    """Per DPC: the differences new - float32 over runs whose set content, learner and seed match a float32 run."""
    ref = {}
    for folder in against:
        for r in runs(folder):
            if r["config"]["evaluator_config"].get("fast") or r["config"]["evaluator_config"].get("cpu_bf16"):
                continue
            ref.setdefault(key(r), (r["score"], folder))
    out = defaultdict(list)
    for r in new:
        hit = ref.get(key(r))
        if hit is not None:
            out[r["dpc"]].append(100 * (r["score"] - hit[0]))
    return dict(sorted(out.items()))


def matmul_rate() -> float:
    """GFLOPS of one thread's bf16 matmul (1024x384 @ 384x1536): this VM's speed drifts between sittings, so the
    record carries it, measured before and after the grid."""
    import torch

    torch.set_num_threads(1)
    a, b = torch.randn(1024, 384, dtype=torch.bfloat16), torch.randn(384, 1536, dtype=torch.bfloat16)
    for _ in range(5):
        a @ b
    t = time.perf_counter()
    for _ in range(50):
        a @ b
    return round(2 * 1024 * 384 * 1536 * 50 / (time.perf_counter() - t) / 1e9)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/quick_grid_fast")
    ap.add_argument("--against", default="results/benchmarks/grid_executors/1_process_x_2_threads,results/quick-sst2")
    ap.add_argument("--record", type=Path, default=ROOT / "results/benchmarks/quick_grid_wall.json")
    ap.add_argument("--report-only", action="store_true", help="print the record and the pairing; run nothing")
    ap.add_argument("--compare", type=Path, help="another folder of the same command's runs (another sitting): how "
                                                 "many sets and scores are the same")
    a = ap.parse_args()
    command = COMMAND + ["--out", os.path.relpath(a.out, ROOT)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not a.report_only:
        declaration = a.out / "grid.yaml"  # the folder's declaration of these runs (kept; validate reads it)
        kept = declaration.read_text() if declaration.is_file() else None
        if a.out.exists():
            shutil.rmtree(a.out)
        if kept is not None:
            a.out.mkdir(parents=True)
            declaration.write_text(kept)
        t0 = time.perf_counter()
        subprocess.run(COMMAND + ["--out", str(a.out), "--sets-only"], check=True, cwd=ROOT, env=env)
        sets_s = time.perf_counter() - t0
        commit = git_commit()
        rate_before = matmul_rate()
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        rates = [rate_before, matmul_rate()]
        if proc.returncode != 0:
            sys.exit(f"dilmbench run failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        record = {"runs": len(runs(a.out)), "wall_s": round(wall, 1), "command": " ".join(command), "commit": commit,
                  "env": {"OMP_NUM_THREADS": "1"}, "started": started, "cpus": os.cpu_count(),
                  "untimed_sets_and_embeddings_s": round(sets_s, 1),
                  "bf16_matmul_gflops_1_thread_before_after": rates, **package_versions(),
                  "run_said": proc.stdout.strip().splitlines()[-12:]}
        atomic_write_text(a.record, json.dumps(record, indent=1) + "\n")
    record = json.loads(a.record.read_text())
    print(f"{record['runs']} runs in {record['wall_s']:.0f} s of `{record['command']}` "
          f"({record['cpus']} CPUs, torch {record.get('torch')}, at {record['commit'][:7]}, {record['started']})")
    if record.get("bf16_matmul_gflops_1_thread_before_after"):
        print("this VM's bf16 matmul, one thread, before / after the grid: %s GFLOPS"
              % " / ".join(map(str, record["bf16_matmul_gflops_1_thread_before_after"])))
    new = runs(a.out)
    fast = sum(bool(r["config"]["evaluator_config"].get("fast")) for r in new)
    train = [r["timing_s"]["train"] for r in new]
    print(f"{fast} of {len(new)} runs on the fast path; training {np.mean(train):.1f} s a run on average "
          f"({sum(train):.0f} s summed over runs)")
    pairs = paired(new, [ROOT / p for p in a.against.split(",")])
    print(f"paired with float32 runs of the same set (content hash), learner and init seed, score difference in points "
          f"(this grid - float32; from {a.against}):")
    for dpc, d in pairs.items():
        d = np.asarray(d)
        print(f"  DPC {dpc:2d}: n={len(d):2d}  mean {d.mean():+.2f}  std {d.std():.2f}  "
              f"largest |diff| {np.abs(d).max():.2f}")
    allp = np.concatenate([np.asarray(d) for d in pairs.values()]) if pairs else np.zeros(0)
    if len(allp):
        print(f"  all:    n={len(allp):2d}  mean {allp.mean():+.2f}  std {allp.std():.2f}  "
              f"(standard error of the mean {allp.std() / np.sqrt(len(allp)):.2f})")
    if a.compare:
        compare(new, a.compare)


def compare(new: list[dict], folder: Path) -> None:
    """Run by run (method, DPC, set index, init) against the same command's runs in ``folder``: the same text set
    (content hash), and the score's difference where it is."""
    if not (folder / "runs").is_dir():
        sys.exit(f"--compare: no runs/ under {folder}")
    other = {(r["method"], r["dpc"], r["set_index"], r["init_index"]): r for r in runs(folder)}
    same_set, diffs, missing = 0, [], 0
    for r in new:
        o = other.get((r["method"], r["dpc"], r["set_index"], r["init_index"]))
        if o is None:
            missing += 1
        elif o["textset"]["content_hash"] == r["textset"]["content_hash"]:
            same_set += 1
            diffs.append(100 * (r["score"] - o["score"]))
    said = f"against {os.path.relpath(folder, ROOT)} (the same command, another sitting)"
    if not diffs:
        print(f"{said}: no run on the same text set")
        return
    d = np.asarray(diffs)
    print(f"{said}: {same_set} of {len(new)} runs on the same text set"
          f"{f', {missing} with no counterpart' if missing else ''}; of those, {int((d == 0).sum())} scores "
          f"bit-identical, the difference in points mean {d.mean():+.3f}, std {d.std():.3f}, largest |diff| "
          f"{np.abs(d).max():.2f}")


if __name__ == "__main__":
    main()
