"""The fast path's optimizer step, two ways, interleaved in one process (A B A B ...; this VM's speed drifts between
minutes, so only side-by-side figures compare):

  flat        fast path version 2: AdamW as one compiled pass over flat buffers (dilmbench.fastpath.MasterAdamW)
  per-tensor  fast path version 1: the bf16 gradients copied into float32 per tensor, a norm per tensor, torch's fused
              AdamW per parameter group, the masters copied back into the bf16 weights

Same texts (a random SST-2 set of DPC x 2 texts), learner MiniLM, seed, 1 thread, `--steps` steps a fine-tune after
one untimed fine-tune of each way (the flat way's kernels compile or load from torch's cache once per process:
printed). Per repetition: the median optimizer step and the fine-tune's seconds a step; and the final losses, which
differ by rounding only. --jobs 2 runs two such processes side by side, as the quick grid's two workers do (they
share the memory bandwidth the optimizer step is bound by).

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/fast_optimizer.py [--dpc 10] [--steps 30] [--reps 3] [--jobs 1]
Output committed: results/benchmarks/fast_optimizer.txt (--jobs 1, then --jobs 2)
"""
import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def one(a):
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from dilmbench import fastpath
    from dilmbench.finetune import FinetuneRecipe, load_classifier
    from dilmbench.models import load_tokenizer
    from dilmbench.tasks import TASKS, load_split

    learner = "sentence-transformers/all-MiniLM-L6-v2"
    train = load_split(TASKS["sst2"], "train", "embedded")
    labels_all = np.asarray(train["label"])
    rng = np.random.default_rng(a.dpc)
    idx = np.concatenate([rng.choice(np.flatnonzero(labels_all == c), a.dpc, replace=False) for c in (0, 1)])
    texts, labels = [(train[int(i)]["sentence"],) for i in idx], [int(labels_all[i]) for i in idx]
    tok = load_tokenizer(learner)
    init, step = fastpath.MasterAdamW.__init__, fastpath.MasterAdamW.step
    opt_s: list = []

    def timed_step(self):
        t = time.perf_counter()
        step(self)
        opt_s.append(time.perf_counter() - t)

    fastpath.MasterAdamW.step = timed_step

    def finetune(way, steps):
        fastpath.MasterAdamW.__init__ = lambda self, *x, **k: init(self, *x, **{**k, "flat": way == "flat"})
        model = load_classifier(learner, 2, 0, "cpu")
        del opt_s[:]
        t = time.perf_counter()
        losses = fastpath.train_classifier_fast(model, tok, texts, labels, FinetuneRecipe(steps=steps, fast=True), 0,
                                                "cpu")
        return time.perf_counter() - t, float(np.median(opt_s)), losses[-1]

    t = time.perf_counter()
    fastpath.compiled_flat_kernels()
    print(f"[{os.getpid()}] flat kernels compiled or loaded in {time.perf_counter() - t:.1f} s; "
          f"DPC {a.dpc}, {len(texts)} texts, {a.steps} steps a fine-tune", flush=True)
    for way in ("flat", "per-tensor"):
        finetune(way, 3)
    for rep in range(a.reps):
        for way in ("per-tensor", "flat"):
            secs, opt, loss = finetune(way, a.steps)
            print(f"[{os.getpid()}] rep {rep} {way:10s} optimizer step {opt * 1e3:5.1f} ms (median), "
                  f"fine-tune {secs / a.steps * 1e3:5.0f} ms a step, final loss {loss:.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dpc", type=int, default=10)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1)
    a = ap.parse_args()
    if a.jobs == 1:
        one(a)
        return
    args = [sys.executable, __file__, "--dpc", str(a.dpc), "--steps", str(a.steps), "--reps", str(a.reps)]
    procs = [subprocess.Popen(args) for _ in range(a.jobs)]
    sys.exit(max(p.wait() for p in procs))


if __name__ == "__main__":
    main()
