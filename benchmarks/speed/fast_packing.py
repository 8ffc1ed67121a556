"""The fast path's forward and backward on packed rows against padded micro-batches, interleaved in one process
(this VM's speed drifts between minutes: compare lines of one sitting), and the row and forward sizes that chose
dilmbench.fastpath's PACK_ROW_TOKENS and PACK_BATCH_TOKENS.

Ways, MiniLM on a random SST-2 set of DPC x 2 texts, 1 thread, `--steps` steps a fine-tune (after one untimed
fine-tune that loads the compiled optimizer kernels):
  padded         length-sorted micro-batches of at most 512 padded tokens (the recipe's CPU default; fast path v1)
  rows R / B     texts end to end in rows of at most R tokens, rows together in forwards of at most B padded tokens

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/fast_packing.py [--dpc 5,10,20] [--steps 20] [--reps 2]
       [--sets a.jsonl,b.jsonl (committed sets instead of random ones)]
Output committed: results/benchmarks/fast_packing.txt
"""
import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WAYS = [None, (32, 512), (64, 512), (128, 512), (64, 1024), (128, 1024)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dpc", default="5,10,20")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--sets", default="", help="comma-separated text set files (.jsonl) to time instead of random sets")
    a = ap.parse_args()
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
    tok = load_tokenizer(learner)
    fastpath.compiled_flat_kernels()
    print(f"torch {torch.__version__}, 1 thread, {os.cpu_count()} CPUs; {learner}; {a.steps} steps a fine-tune; "
          f"ms a step, median of {a.reps} interleaved repetitions (each repetition's figures in brackets)")
    from dilmbench.textset import load_textset

    load = lambda path: load_textset(path, TASKS["sst2"])  # noqa: E731
    cases = [(f"DPC {d}", int(d), None) for d in a.dpc.split(",")] if not a.sets else \
        [(path, None, load(path)) for path in a.sets.split(",")]
    for name, dpc, ts in cases:
        if ts is None:
            rng = np.random.default_rng(dpc)
            idx = np.concatenate([rng.choice(np.flatnonzero(labels_all == c), dpc, replace=False) for c in (0, 1)])
            texts, labels = [(train[int(i)]["sentence"],) for i in idx], [int(labels_all[i]) for i in idx]
        else:
            texts, labels = ts.texts, ts.labels
        lengths = [len(tok(*t)["input_ids"]) for t in texts]
        print(f"\n{name}: {len(texts)} texts, {sum(lengths)} tokens (longest {max(lengths)})")

        def finetune(way, steps):
            model = load_classifier(learner, 2, 0, "cpu")
            recipe = FinetuneRecipe(steps=steps, fast=True)
            if way:
                fastpath.PACK_ROW_TOKENS, fastpath.PACK_BATCH_TOKENS = way
            t = time.perf_counter()
            losses = fastpath.train_classifier_fast(model, tok, texts, labels, recipe, 0, "cpu", pack=way is not None)
            return (time.perf_counter() - t) / steps, losses[-1]

        finetune(None, 2)
        times = {w: [] for w in WAYS}
        final = {}
        for _ in range(a.reps):
            for w in WAYS:
                secs, final[w] = finetune(w, a.steps)
                times[w].append(secs * 1e3)
        base = float(np.median(times[None]))
        for w in WAYS:
            med = float(np.median(times[w]))
            name = "padded" if w is None else f"rows {w[0]} / {w[1]}"
            print(f"  {name:16s} {med:5.0f} ms  [{', '.join(f'{x:.0f}' for x in times[w])}]  "
                  f"{base / med:4.2f}x padded  final loss {final[w]:.4f}")


if __name__ == "__main__":
    main()
