"""float32 against bfloat16 autocast for the finetune evaluator on a CPU (FinetuneRecipe.cpu_bf16): the same random
DPC sets and seeds fine-tuned and scored both ways in one process, printed side by side (train s, eval s, score).

Usage: HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 python benchmarks/speed/cpu_bf16.py TASK DPC SETS [DATA_DIR]
  e.g. python benchmarks/speed/cpu_bf16.py qqp 5 3 ../shared/data/glue-subsets
"""
import sys

import numpy as np
import torch

from dilmbench.api import EvalContext
from dilmbench.registry import EVALUATORS
from dilmbench.tasks import TASKS, load_task_data
from dilmbench.textset import TextSet

if len(sys.argv) not in (4, 5) or not (sys.argv[2].isdigit() and sys.argv[3].isdigit()):
    sys.exit("usage: python benchmarks/speed/cpu_bf16.py TASK DPC SETS [DATA_DIR] (DPC and SETS whole numbers)")
task_name, dpc, n_sets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
source = sys.argv[4] if len(sys.argv) > 4 else "embedded"
task = TASKS[task_name]
data = load_task_data(task, source, 2000, 0)
ctx = EvalContext(data=data, device="cpu", cache_dir=None, progress=False)
texts, labels = data.texts("pool"), data.labels("pool")
print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {task_name}: pool {len(texts)}, "
      f"eval {len(data.eval)} rows; random DPC {dpc} sets, learner MiniLM, quick protocol (200 steps)")
print("set | fp32 train s, eval s, score | bf16 train s, eval s, score | score diff")
ratios_train, ratios_eval, diffs = [], [], []
evs = {p: EVALUATORS.get("finetune").for_preset("quick", cpu_bf16=p) for p in (False, True)}
for s in range(n_sets):
    rng = np.random.default_rng(1000 + s)
    rows = [int(j) for c in range(task.num_labels) for j in rng.choice(np.flatnonzero(labels == c), dpc, replace=False)]
    ts = TextSet(task=task_name, text_fields=task.text_fields, texts=[texts[j] for j in rows],
                 labels=[int(labels[j]) for j in rows])
    out = {}
    for p, ev in evs.items():
        res = ev.evaluate(ctx, ts, ev.learners()[0], seed=s)
        out[p] = (res["timing_s"]["train"], res["timing_s"]["eval"], res["score"])
    (a, b, c), (d, e, f) = out[False], out[True]
    ratios_train.append(a / d), ratios_eval.append(b / e), diffs.append(100 * (f - c))
    print(f"{s:3d} | {a:7.1f} {b:7.1f} {100 * c:6.2f} | {d:7.1f} {e:7.1f} {100 * f:6.2f} | {100 * (f - c):+6.2f}",
          flush=True)
print(f"speed-up (fp32 / bf16): train {np.mean(ratios_train):.2f}x, eval {np.mean(ratios_eval):.2f}x "
      f"(the first eval of each includes tokenizing the eval split); score diff bf16 - fp32: "
      f"mean {np.mean(diffs):+.2f}, mean |diff| {np.mean(np.abs(diffs)):.2f} points over {n_sets} sets")
