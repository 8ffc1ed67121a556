"""Train (or reuse) DiLM's stage-1 generator under the quick preset with overrides, then measure on the dev split:
class conditioning (Generator.conditioning_accuracy on the first N dev texts), how far the class-token rows moved
apart, the stage's wall time and, with --samples K, how often the set cards' judge (fitted on the pool) agrees with
the class of K texts sampled per class (before k-centers). The generator lands in the cache where `dilmbench run` finds it.

Usage: HF_HUB_OFFLINE=1 python results/quick-sst2-dilm-tune/probes/dilm_stage1.py N '{"lm_steps": 600, "new_token_lr": 1e-3}' [--steps0] [--samples K] [--no-conditioning]
       (--steps0: also the conditioning of the untrained generator under the same initialisation)
"""
import json, sys, time

import numpy as np

from dilmbench.api import MethodContext
from dilmbench.cache import cache_root
from dilmbench.cards import judge_for
from dilmbench.seeds import derive_seed
from dilmbench.config import build_config
from dilmbench.registry import METHODS
from dilmbench.tasks import TASKS, load_task_data

n, overrides = int(sys.argv[1]), json.loads(sys.argv[2])
cfg = build_config("quick")
data = load_task_data(TASKS["sst2"], cfg["data_source"], cfg["dev_size"], cfg["dev_seed"])
ctx = MethodContext(data=data, encoder=cfg["encoder"], pooling=cfg["pooling"], device="cpu", cache_dir=cache_root())
m = METHODS.get("dilm_vanilla").for_preset("quick", **overrides)
texts, labels = data.texts("dev")[:n], data.labels("dev")[:n]
major = 100 * max(labels.mean(), 1 - labels.mean())
print(f"overrides {json.dumps(overrides, sort_keys=True)}; {n} dev texts (majority {major:.1f}%)", flush=True)


def report(name, gen, seconds=None):
    emb = gen.model.get_input_embeddings().weight.detach()
    d = float((emb[gen.class_ids[0]] - emb[gen.class_ids[1]]).norm())
    if "--no-conditioning" not in sys.argv:
        acc = 100 * gen.conditioning_accuracy(texts, labels, m.config["max_length"], "cpu")
        extra = f", stage wall {seconds:.0f} s" if seconds is not None else ""
        print(f"  {name}: conditioning {acc:.1f}%, class rows {d:.3f} apart{extra}", flush=True)
    if "--samples" in sys.argv:
        k = int(sys.argv[sys.argv.index("--samples") + 1])
        judge, dev_acc = judge_for(data, cache_root())
        t = time.perf_counter()
        agree, words = [], []
        for c in range(2):
            texts_c, _ = gen.sample(c, k, 1, derive_seed("stage1-check", c), m.config["top_p"], m.config["top_k"],
                                    m.config["max_new_tokens"], m.config["gen_batch_size"], "cpu")
            agree.extend(judge.predict([t[0] for t in texts_c]) == c)
            words.extend(len(t[0].split()) for t in texts_c)
            print(f"    class {c} samples: " + " | ".join(t[0] for t in texts_c[:4]), flush=True)
        print(f"  judge agreement on {k} samples per class: {100 * np.mean(agree):.1f}% (judge {100 * dev_acc:.1f}% "
              f"on dev), {np.mean(words):.1f} words [{time.perf_counter() - t:.0f} s]", flush=True)


if "--steps0" in sys.argv:
    report("untrained", m.new_generator(ctx))
lm_dir, _ = m._stage_dirs(ctx)
t = time.perf_counter()
gen = m.train_lm(ctx, lm_dir)
report(f"after {m.config['lm_steps']} steps ({lm_dir.name})", gen, time.perf_counter() - t)
