"""DiLM's paper preset next to the reference implementation's settings (methods/dilm/reference.py).

Usage: python benchmarks/analyses/dilm_paper_vs_reference.py
"""
from dilmbench.methods.dilm import PAPER, QUICK
from dilmbench.methods.dilm.reference import DEVIATIONS, REFERENCE

print(f"{'setting':<20} {'paper preset':>14} {'reference':>14} {'quick preset':>36}  where the reference sets it")
for key in sorted(PAPER, key=lambda k: (k not in REFERENCE, k)):
    ours, quick = PAPER[key], QUICK.get(key, PAPER[key])
    ref, where = REFERENCE.get(key, ("–", DEVIATIONS.get(key, "(suite only)")))
    mark = " " if key not in REFERENCE or ours == ref else "≠"
    print(f"{key:<20} {str(ours):>14} {str(ref):>14}{mark}{str(quick):>36}  {where}")
