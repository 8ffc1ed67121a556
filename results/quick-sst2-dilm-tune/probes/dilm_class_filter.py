"""How the stage-3 class filter (DiLM's ``class_filter``) changes what the quick generators write, on cheap signals:
sample K texts per class from the cached quick dilm and dilm_vanilla generators (trained by `dilmbench run` or
results/quick-sst2-dilm-tune/probes/dilm_stage1.py), rank them by the generator's own class margin (Generator.class_margins), and print, for
each kept share, the set cards' judge agreement (the judge is fitted on the pool, scored on dev) and mean length.
Nothing here reads the evaluation split.

Usage: HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python results/quick-sst2-dilm-tune/probes/dilm_class_filter.py K [share ...]
"""
import sys
import time

import numpy as np

from dilmbench.api import MethodContext
from dilmbench.cache import cache_root
from dilmbench.cards import judge_for
from dilmbench.config import build_config
from dilmbench.registry import METHODS
from dilmbench.seeds import derive_seed
from dilmbench.tasks import TASKS, load_task_data

k = int(sys.argv[1])
shares = [float(s) for s in sys.argv[2:]] or [1.0, 0.5, 0.3, 0.2]
cfg = build_config("quick")
data = load_task_data(TASKS["sst2"], cfg["data_source"], cfg["dev_size"], cfg["dev_seed"])
ctx = MethodContext(data=data, encoder=cfg["encoder"], pooling=cfg["pooling"], device="cpu", cache_dir=cache_root())
judge, dev_acc = judge_for(data, cache_root())
print(f"# {k} samples per class from each quick generator; judge (TF-IDF + LR on the pool) {100 * dev_acc:.1f}% on dev")
for name in ("dilm_vanilla", "dilm"):
    m = METHODS.get(name).for_preset("quick")
    t = time.perf_counter()
    m.prepare(ctx)  # cached stages: loads the generator
    rows = {s: ([], []) for s in shares}
    for c in range(data.task.num_labels):
        texts, _ = m._gen.sample(c, k, 1, derive_seed("class-filter-check", c), m.config["top_p"], m.config["top_k"],
                                 m.config["max_new_tokens"], m.config["gen_batch_size"], "cpu")
        margins = m._gen.class_margins(texts, c, "cpu")
        agree = judge.predict([x[0] for x in texts]) == c
        words = np.array([len(x[0].split()) for x in texts])
        order = np.argsort(-margins, kind="stable")
        for s in shares:
            top = order[: max(1, int(np.ceil(s * len(texts))))]
            rows[s][0].extend(agree[top])
            rows[s][1].extend(words[top])
        print(f"  {name} class {c}: highest margin: " + " | ".join(texts[i][0] for i in order[:3])
              + "  ...  lowest: " + " | ".join(texts[i][0] for i in order[-3:]), flush=True)
    for s in shares:
        print(f"  {name:12s} keep {s:4.2f}: judge agreement {100 * np.mean(rows[s][0]):5.1f}%, "
              f"{np.mean(rows[s][1]):4.1f} words", flush=True)
    print(f"  [{time.perf_counter() - t:.0f} s]", flush=True)
