"""Give results made before results recorded their data's fingerprint that fingerprint, where it is provable: the
result read the package's embedded data, and those files at the git commit the result records are the files there
now (Runner._prove_data, the same rule `dilmbench run` applies to a finished result it would reuse). Anything else is
left as it is and listed, so `dilmbench validate` keeps naming it.

Usage: python benchmarks/tools/stamp_data_fingerprints.py RESULTS [RESULTS ...]
"""
import sys
from pathlib import Path

from dilmbench.runner import Runner, read_result, result_data_id
from dilmbench.tasks import TASKS, load_task_data

for folder in [f for f in sys.argv[1:] if Path(f).is_dir()]:
    stamped, unprovable, loaded = 0, [], {}
    for path in sorted(Path(folder).glob("runs*/**/*.json")):
        rec = read_result(path)
        if rec is None or result_data_id(rec) is not None:
            continue
        d = rec.get("data") or {}
        key = (rec["task"], d.get("source"), d.get("dev_size"), d.get("dev_seed"))
        if key not in loaded:
            loaded[key] = load_task_data(TASKS[rec["task"]], d.get("source"), d.get("dev_size", 0), d.get("dev_seed", 0))
        data = loaded[key]
        same_sizes = (len(data.pool), len(data.eval)) == (d.get("pool_size"), d.get("eval_size"))
        if same_sizes and Runner._prove_data(path, data):
            stamped += 1
        else:
            unprovable.append(str(path))
    print(f"{folder}: {stamped} result(s) stamped, {len(unprovable)} left without a fingerprint"
          + (f" (e.g. {unprovable[0]})" if unprovable else ""))
