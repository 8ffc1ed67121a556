"""Fine-tuning steps of the evaluation recipe, side by side: dilmbench's way against the obvious implementation.

Obvious: torch's default (for-loop) AdamW and one batch padded to its longest text. dilmbench: fused AdamW (the
same update) and the batch run as length-sorted micro-batches of at most 512 padded tokens whose losses add up to
the batch mean (the same gradient; tests/test_finetune.py). Same model, same texts, same number of steps.

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/bench_finetune_step.py [--learner ID] [--steps 20]
"""
import argparse
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--learner", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()

    import dilmbench.finetune as ft
    from dilmbench.models import load_tokenizer
    from dilmbench.tasks import TASKS, load_split

    train = load_split(TASKS["sst2"], "train", "embedded")
    rng = np.random.default_rng(0)
    tok = load_tokenizer(args.learner)
    lengths = np.array([len(s.split()) for s in train["sentence"]])
    sets = {"random 40 texts (DPC 20)": rng.choice(len(train), 40, replace=False),
            "long 40 texts (15-30 words, like k-centers/herding sets)": rng.choice(np.flatnonzero((lengths >= 15) & (lengths <= 30)), 40, replace=False)}
    real_adamw = torch.optim.AdamW
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; learner {args.learner}; {args.steps} steps each")
    for name, idx in sets.items():
        texts = [(train[int(i)]["sentence"],) for i in idx]
        labels = [train[int(i)]["label"] for i in idx]
        times = {}
        for way in ("obvious", "dilmbench"):
            recipe = ft.FinetuneRecipe(steps=args.steps, micro_batch_tokens=0 if way == "obvious" else 512)
            if way == "obvious":  # the default AdamW implementation instead of the fused kernel
                torch.optim.AdamW = lambda params, **kw: real_adamw(params, **{k: v for k, v in kw.items() if k != "fused"}, foreach=False)
            model = ft.load_classifier(args.learner, 2, 0, "cpu")
            ft.train_classifier(model, tok, texts[:8], labels[:8], ft.FinetuneRecipe(steps=2), 0, "cpu")  # warm-up
            t = time.perf_counter()
            ft.train_classifier(model, tok, texts, labels, recipe, 0, "cpu")
            times[way] = (time.perf_counter() - t) / args.steps
            torch.optim.AdamW = real_adamw
        print(f"  {name}: obvious {times['obvious']:.3f} s/step, dilmbench {times['dilmbench']:.3f} s/step, "
              f"speed-up {times['obvious'] / times['dilmbench']:.2f}x")


if __name__ == "__main__":
    main()
