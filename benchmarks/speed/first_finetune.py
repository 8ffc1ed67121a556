"""Is the first fine-tune in a process slower than the next ones? Three fine-tunes of STEPS steps on
DPC-5 SST-2 sets in one process, each timed (model load, training, evaluation features + pass); the first run also
pays for tokenizing the evaluation split, which the finetune evaluator then keeps for the process.

Usage: HF_HUB_OFFLINE=1 OMP_NUM_THREADS=N python benchmarks/speed/first_finetune.py [STEPS]
"""
import sys
import time

t_start = time.perf_counter()
import torch  # noqa: E402

from dilmbench.api import EvalContext  # noqa: E402
from dilmbench.registry import EVALUATORS  # noqa: E402
from dilmbench.tasks import TASKS, load_task_data  # noqa: E402
from dilmbench.textset import TextSet  # noqa: E402

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; imports {time.perf_counter() - t_start:.1f} s")
data = load_task_data(TASKS["sst2"], "embedded", 2000, 0)
ev = EVALUATORS.get("finetune").for_preset("quick", steps=steps)
ctx = EvalContext(data=data, device="cpu", cache_dir=None, progress=False)
texts, labels = data.texts("pool"), data.labels("pool")
for i in range(3):
    rows = [j for c in (0, 1) for j in [k for k in range(i * 200, i * 200 + 200) if labels[k] == c][:5]]
    ts = TextSet(task="sst2", text_fields=("sentence",), texts=[texts[j] for j in rows],
                 labels=[int(labels[j]) for j in rows])
    t0 = time.perf_counter()
    res = ev.evaluate(ctx, ts, ev.learners()[0], seed=i)
    t = res["timing_s"]
    print(f"run {i}: total {time.perf_counter() - t0:6.1f} s = load {t['load']:5.1f} + train {t['train']:6.1f} "
          f"+ eval {t['eval']:5.1f} (the first eval includes tokenizing the {len(data.eval)} eval texts)", flush=True)
