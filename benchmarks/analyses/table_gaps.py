"""Gaps between methods in a results folder, per task / learner / DPC: each pair's difference of means in points and
in units of the larger of the two rows' stds (ddof 0), with n. What the results READMEs quote.

Usage: python benchmarks/analyses/table_gaps.py RESULTS_DIR METHOD OTHER [OTHER ...]   (e.g. results/quick-sst2 dilm random)
"""
import sys

from dilmbench.tables import load_results, summarize

out, method, others = sys.argv[1], sys.argv[2], sys.argv[3:]
s = summarize(load_results(out)).set_index(["task", "evaluator", "learner", "method", "dpc"])
for (task, evaluator, learner, m, dpc), row in s.iterrows():
    if m != method:
        continue
    line = [f"{task} {learner.split('/')[-1]} DPC {dpc}: {method} {100 * row['mean']:.1f} ± {100 * row['std']:.1f} "
            f"(n={int(row['n'])})"]
    for o in others:
        key = (task, evaluator, learner, o, dpc)
        if key not in s.index:
            line.append(f"{o} –")
            continue
        r = s.loc[key]
        gap = 100 * (row["mean"] - r["mean"])
        unit = 100 * max(row["std"], r["std"])
        line.append(f"vs {o} {100 * r['mean']:.1f} ± {100 * r['std']:.1f} (n={int(r['n'])}): {gap:+.1f} "
                    f"({gap / unit:+.1f} std)" if unit > 0 else f"vs {o}: {gap:+.1f}")
    print("; ".join(line))
