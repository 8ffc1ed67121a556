"""DiLM stage 2: the matching objective over training, from a stage-2 checkpoint's progress.json. Prints, per outer
loop, the mean cosine of the matched head gradients (grad_sim) over its inner updates (the last 50 updates are kept).

Usage: python benchmarks/analyses/dilm_grad_sim.py INNER_LOOPS GM_DIR [GM_DIR ...]   (e.g. ~/.cache/dilmbench/dilm/sst2/gm-*)
"""
import json, os, sys
import numpy as np
inner = int(sys.argv[1])
for d in sys.argv[2:]:
    sims = np.array(json.load(open(os.path.join(d, "final", "progress.json")))["grad_sim"])
    per_outer = sims[: len(sims) // inner * inner].reshape(-1, inner).mean(1)
    print(f"{os.path.basename(os.path.normpath(d))}: " + " ".join(f"{x:.2f}" for x in per_outer))
