"""Compare a folder's results with the same runs made again elsewhere (for instance by `dilmbench run --config
FOLDER/grid.yaml --out SCRATCH` or shards of it), run by run, with `dilmbench reproduce`'s verdicts: identical, within
tolerance, different (and why: another configuration, other data, another set made by today's code).

Usage: python benchmarks/tools/compare_rerun.py FOLDER RERUN [RERUN ...] [--tolerance 0.5]
"""
import argparse
from collections import Counter
from pathlib import Path

from dilmbench.record import RunRecord
from dilmbench.reproduce import compare

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("reruns", type=Path, nargs="+")
    ap.add_argument("--tolerance", type=float, default=0.5)
    a = ap.parse_args()
    rows = []
    for rerun in a.reruns:
        for path in sorted(rerun.glob("runs*/**/*.json")):
            rel = path.relative_to(rerun)
            new, old = RunRecord.read(path), RunRecord.read(a.folder / rel)
            if new is None or old is None:
                continue
            rows.append((str(rel), old, new, compare(old.raw, new.raw, a.tolerance)))
    counts = Counter(c["verdict"] for *_, c in rows)
    print(f"{len(rows)} runs of {a.folder} made again in {', '.join(map(str, a.reruns))} "
          f"(tolerance {a.tolerance} points): {counts.get('identical', 0)} identical, "
          f"{counts.get('within tolerance', 0)} within tolerance, {counts.get('different', 0)} different")
    for rel, old, new, c in rows:
        if c["verdict"] != "identical":
            print(f"  {rel}: {100 * old.score:.2f} -> {100 * new.score:.2f} ({c['diff']:+.2f}) {c['verdict']}"
                  + (f": {c['why']}" if c["why"] else ""))
    diffs = [c["diff"] for *_, c in rows if c["diff"] is not None]
    if len(diffs) > 1:
        import numpy as np

        train = [(o.raw.get("timing_s", {}).get("train"), n.raw.get("timing_s", {}).get("train")) for _, o, n, _ in rows]
        train = [(a, b) for a, b in train if a and b]
        print(f"paired difference (rerun - folder): mean {np.mean(diffs):+.2f}, std {np.std(diffs):.2f} points (ddof 0), "
              f"n = {len(diffs)}; same set in {sum(c.get('same_set', False) for *_, c in rows)} of {len(rows)}")
        if train:
            print(f"training seconds a run, median: folder {np.median([a for a, _ in train]):.0f}, rerun "
                  f"{np.median([b for _, b in train]):.0f} (as each record says; the machine's load may differ)")
