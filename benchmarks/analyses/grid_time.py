"""Where a grid's time went: sums the per-phase timings recorded in its result files.

Usage: python benchmarks/analyses/grid_time.py results/quick-sst2
"""
import json
import sys
from collections import defaultdict
from pathlib import Path

from dilmbench.runner import RUNNER_TIMINGS  # make_set is counted once per set below; the others are not phases


def main(out: str):
    phases, per_method, n = defaultdict(float), defaultdict(lambda: [0, 0.0, 0.0]), 0
    seen_sets = set()
    for path in sorted((Path(out) / "runs").rglob("*.json")):
        rec = json.loads(path.read_text())
        n += 1
        t = rec["timing_s"]
        for k, v in t.items():  # the evaluator's own phases (finetune: load, train, eval; icl: score)
            if k not in RUNNER_TIMINGS:
                phases[k] += v
        key = (rec["task"], rec["method"], rec["dpc"], rec["set_index"])
        if key not in seen_sets:  # set-making and preparation are recorded on every run of the set: count once
            seen_sets.add(key)
            phases["make_set"] += t.get("make_set", 0.0)
            per_method[(rec["method"], rec["dpc"])][2] += t.get("make_set", 0.0)
        row = per_method[(rec["method"], rec["dpc"])]
        row[0] += 1
        row[1] += t.get("evaluate_total", 0.0)
    total = sum(phases.values())
    print(f"{n} runs; recorded time {total:.0f} s")
    for k, v in sorted(phases.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<10} {v:8.0f} s  {100 * v / total:5.1f}%")
    print("per method x DPC: runs, evaluation s, set-making s, together s")
    for (m, d), (runs, ev, mk) in sorted(per_method.items()):
        print(f"  {m:<16} DPC {d:<3} {runs:4d} {ev:8.0f} {mk:8.0f} {ev + mk:8.0f}")
    print("per method, all DPCs: runs, evaluation and set-making s together; mean per run")
    methods = defaultdict(lambda: [0, 0.0])
    for (m, _), (runs, ev, mk) in per_method.items():
        methods[m][0] += runs
        methods[m][1] += ev + mk
    for m, (runs, secs) in sorted(methods.items()):
        print(f"  {m:<16} {runs:4d} {secs:8.0f} {secs / runs:8.0f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results")
