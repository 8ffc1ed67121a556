"""Which small LM writes the better ZeroGen texts on the dev split (the quick preset's choice for zerogen / s3 /
gold), and how fast each generation backend is: for each generator, a ZeroGen pool of K texts per class on SST-2
(the method's own prompts and sampling), then the set cards' judge agreement (judge fitted on the pool, scored on
dev), mean words, distinct-2, and tokens/s of generation. Nothing here reads the evaluation split.

Usage: HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 python results/benchmarks/probes/synthesis_generators.py K [model ...] [--backend transformers|vllm]
"""
import sys
import tempfile
import time

import numpy as np

from dilmbench.api import MethodContext
from dilmbench.cache import cache_root
from dilmbench.cards import distinct_n, judge_for
from dilmbench.config import build_config
from dilmbench.registry import METHODS
from dilmbench.seeds import derive_seed
from dilmbench.tasks import TASKS, load_task_data

args = [a for a in sys.argv[1:] if not a.startswith("--")]
backend = sys.argv[sys.argv.index("--backend") + 1] if "--backend" in sys.argv else "transformers"
args = [a for a in args if a != backend]
k = int(args[0])
models = args[1:] or ["HuggingFaceTB/SmolLM2-135M-Instruct", "google/gemma-3-270m"]
cfg = build_config("quick")
data = load_task_data(TASKS["sst2"], cfg["data_source"], cfg["dev_size"], cfg["dev_seed"])
judge, dev_acc = judge_for(data, cache_root())
print(f"# ZeroGen pools of {k} texts per class on SST-2, backend {backend}; judge {100 * dev_acc:.1f}% on dev")
for model in models:
    with tempfile.TemporaryDirectory() as tmp:  # a fresh generation cache: every text is generated and timed
        ctx = MethodContext(data=data, encoder=cfg["encoder"], pooling=cfg["pooling"], device="cpu", cache_dir=tmp)
        m = METHODS.get("zerogen").for_preset("quick", generator=model, backend=backend)
        gen = m.generator(ctx)
        spec = m.prompts(data.task)
        t0 = time.perf_counter()
        pools = {c: m.write(ctx, gen, spec, c, k, derive_seed(0, "synthesis-probe", c)) for c in range(2)}
        secs = time.perf_counter() - t0
    agree, words, texts = [], [], []
    for c, rows in pools.items():
        agree.extend(judge.predict([r[0] for r in rows]) == c)
        words.extend(len(r[0].split()) for r in rows)
        texts.extend(r[0] for r in rows)
    print(f"  {model:40s} judge agreement {100 * np.mean(agree):5.1f}%, {np.mean(words):4.1f} words, "
          f"distinct-2 {100 * distinct_n(texts, 2):5.1f}%, {gen.cost['tokens'] / secs:6.1f} tokens/s "
          f"({gen.cost['tokens']} tokens, {gen.cost['llm_calls']} calls, {secs:.0f} s)", flush=True)
    for c in range(2):
        print(f"    class {c}: " + " | ".join(r[0] for r in pools[c][:3]), flush=True)
