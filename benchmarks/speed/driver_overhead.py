"""How many runs per second the runner's driver can feed, per executor (where the driver becomes the
bottleneck on a GPU node or a cluster). Every run's evaluation is made nearly free by a plugin evaluator that fits
nothing (it predicts the set's majority class on the split), so what is left is the grid's own cost per run:
planning, the set (random selection, its card, its files), dispatch to a worker and back, and the result's atomic
write. The pool embeddings and the card judge are cached beforehand (a warm-up run), as they are in any real grid.

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/driver_overhead.py [--sets 20] [--inits 5] [--dpc 5,10,20] [--no-ray]
(defaults: the paper's cell count for one task x method x learner, 3 DPC x 20 sets x 5 inits = 300 runs)
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PLUGIN = '''
from collections import Counter

from dilmbench.api import Evaluator
from dilmbench.registry import register_evaluator


@register_evaluator("majority")
class Majority(Evaluator):
    """Predicts the set's most frequent label (ties: the lowest) for every example: no model, no training."""

    def learners(self):
        return ["majority"]

    def required_models(self):
        return []

    def evaluate(self, ctx, textset, learner, seed):
        label = min(Counter(textset.labels).most_common(), key=lambda kv: (-kv[1], kv[0]))[0]
        gold = ctx.data.labels(ctx.split)
        return ctx.task.score(gold, [label] * len(gold))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", default="20")
    ap.add_argument("--inits", default="5")
    ap.add_argument("--dpc", default="5,10,20")
    ap.add_argument("--no-ray", action="store_true")
    a = ap.parse_args()
    ways = [("sequential, 1 process", ["--workers", "1"]),
            ("2 local workers", ["--workers", "2", "--threads-per-worker", "1"])]
    if not a.no_ray:
        ways.append(("Ray, local, 2 CPUs", ["--executor", "ray", "--workers", "2", "--threads-per-worker", "1"]))
    rows, scores = [], []
    with tempfile.TemporaryDirectory() as tmp:
        plugin = Path(tmp) / "majority_evaluator.py"
        plugin.write_text(PLUGIN)
        base = ["dilmbench", "run", "--preset", "quick", "--task", "sst2", "--methods", "random", "--evaluator",
                "majority", "--plugin", str(plugin), "--no-progress"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        subprocess.run(base + ["--dpc", "5", "--sets", "1", "--out", f"{tmp}/warm"], check=True, capture_output=True,
                       env=env)  # embeddings and the card judge into the cache
        for name, extra in ways:
            out = Path(tmp) / name.split(",")[0].replace(" ", "_")
            t0 = time.perf_counter()  # one run alone: the command's fixed cost (start, data, workers)
            subprocess.run(base + extra + ["--dpc", "5", "--sets", "1", "--out", f"{out}-one"], check=True,
                           capture_output=True, env=env)
            fixed = time.perf_counter() - t0
            t0 = time.perf_counter()
            subprocess.run(base + extra + ["--dpc", a.dpc, "--sets", a.sets, "--inits", a.inits, "--out", str(out)],
                           check=True, capture_output=True, env=env)
            secs = time.perf_counter() - t0
            runs = sorted((out / "runs").rglob("*.json"))
            recs = [json.loads(p.read_text()) for p in runs]
            inner = sum(r["timing_s"]["evaluate_total"] for r in recs)
            sets = sum(1 for _ in (out / "sets").rglob("*.jsonl"))
            scores.append({str(p.relative_to(out)): r["score"] for p, r in zip(runs, recs)})
            rows.append((name, fixed, secs, len(runs), sets, inner))
    print(f"# driver overhead: sst2, random, DPC {a.dpc} x {a.sets} sets x {a.inits} inits, evaluator 'majority' "
          f"(no model); {os.cpu_count()} CPUs; wall time of the whole command, process start and data load included")
    print("  (fixed: the same command for 1 run; per run: (grid - fixed) / (runs - 1), the driver's marginal cost)")
    for name, fixed, secs, n, sets, inner in rows:
        per = (secs - fixed) / (n - 1)
        print(f"  {name:24s} {n} runs ({sets} sets) in {secs:6.1f} s; fixed {fixed:5.1f} s; per run "
              f"{1000 * per:6.1f} ms = {1 / per:5.1f} runs/s, of which the evaluation itself {1000 * inner / n:5.1f} ms")
    same = all(s == scores[0] for s in scores[1:])
    print(f"  scores identical across the {len(rows)}: {same}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
