"""One fine-tuning step of the evaluation recipe, five ways, beside what the hardware allows.

Ways (same learner, same texts, same number of steps; per step, after warm-up steps):
  obvious   the obvious Hugging Face loop: one batch padded to its longest text, model(**batch, labels=...).loss,
            torch's default AdamW, clip_grad_norm_, the transformers cosine schedule; float32
  fp32      dilmbench's reference path (train_classifier): fused AdamW, length-sorted micro-batches; float32
  bf16      the reference path under bf16 autocast (the `cpu_bf16` option)
  fast      the fast path (dilmbench.fastpath, `fast: true`): bf16 weights with float32 masters, the embedding's used
            rows, dropout from the run's stream
  fast-1    the fast path with one padded batch per step (micro_batch_tokens 0, as the batched path needs)
  batched   the batched path (dilmbench.batched): R runs of a cell trained as one model, time per run

Floors: compute = the step's FLOPs (torch's FlopCounterMode on one reference step) at the measured peak of a bf16
matmul (and float32 for the float32 ways); memory = the bytes AdamW must touch (parameters, gradients, two moments,
read and written: 7 x 4 bytes per float32 parameter it updates) at the measured bandwidth of a large copy.

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/finetune_roofline.py [--threads 1] [--steps 10] [--ways ...]
Output committed: results/benchmarks/finetune_roofline.txt
"""
import argparse
import os
import time

import numpy as np
import torch


def matmul_peak(dtype, m=1024, k=384, n=1536, reps=30) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(5):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * m * k * n * reps / (time.perf_counter() - t)


def copy_bandwidth(n=16_000_000, reps=10) -> float:
    src, dst = torch.randn(n), torch.empty(n)
    dst.copy_(src)
    t = time.perf_counter()
    for _ in range(reps):
        dst.copy_(src)
    return 2 * 4 * n * reps / (time.perf_counter() - t)  # bytes read + written


def step_flops(learner, tok, texts, labels) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    import dilmbench.finetune as ft

    model = ft.load_classifier(learner, 2, 0, "cpu")
    recipe = ft.FinetuneRecipe(steps=1)
    opt, sched = ft.make_optimizer(model, recipe)
    feats = ft.tokenize(tok, texts, recipe.max_length)
    with FlopCounterMode(display=False) as counter:
        ft.train_step(model, tok, feats, torch.as_tensor(labels), opt, sched, recipe, "cpu")
    return float(counter.get_total_flops())


def obvious(learner, tok, texts, labels, steps, seed=0):
    from transformers import AutoModelForSequenceClassification, get_scheduler

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(learner, num_labels=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    sched = get_scheduler("cosine", optimizer=opt, num_warmup_steps=steps // 2, num_training_steps=steps)
    batch = tok([t[0] for t in texts], padding=True, truncation=True, max_length=128, return_tensors="pt")
    y = torch.as_tensor(labels)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--learner", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dpc", default="5,20")
    ap.add_argument("--ways", default="obvious,fp32,bf16,fast,fast-1,batched")
    ap.add_argument("--batched-runs", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import dilmbench.finetune as ft
    from dilmbench.models import load_tokenizer
    from dilmbench.tasks import TASKS, load_split

    train = load_split(TASKS["sst2"], "train", "embedded")
    tok = load_tokenizer(args.learner)
    peak16, peak32, bw = matmul_peak(torch.bfloat16), matmul_peak(torch.float32), copy_bandwidth()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs; learner {args.learner}; "
          f"{args.steps} timed steps after {args.warmup}")
    print(f"measured: bf16 matmul {peak16 / 1e9:.0f} GFLOPS, fp32 matmul {peak32 / 1e9:.0f} GFLOPS "
          f"(1024x384 @ 384x1536), copy bandwidth {bw / 1e9:.1f} GB/s (read + write)")
    ways = args.ways.split(",")
    for dpc in (int(d) for d in args.dpc.split(",")):
        rng = np.random.default_rng(dpc)
        rows = {c: np.flatnonzero(np.asarray(train["label"]) == c) for c in (0, 1)}
        idx = np.concatenate([rng.choice(rows[c], dpc, replace=False) for c in (0, 1)])
        texts, labels = [(train[int(i)]["sentence"],) for i in idx], [int(train[int(i)]["label"]) for i in idx]
        tokens = sum(len(tok(t[0])["input_ids"]) for t in texts)
        flops = step_flops(args.learner, tok, texts, labels)
        n_all = sum(p.numel() for p in ft.load_classifier(args.learner, 2, 0, "cpu").parameters())
        emb = ft.load_classifier(args.learner, 2, 0, "cpu").get_input_embeddings().weight
        used = len({i for t in texts for i in tok(t[0])["input_ids"]}) + 1
        n_fast = n_all - emb.shape[0] * emb.shape[1] + used * emb.shape[1]
        print(f"\nDPC {dpc}: batch {len(texts)}, {tokens} tokens, {flops / 1e9:.1f} GFLOP per step (fwd + bwd)")
        print(f"  floors: compute {flops / peak16 * 1e3:.0f} ms at the bf16 peak ({flops / peak32 * 1e3:.0f} ms fp32); "
              f"optimizer bytes {n_all * 28 / 1e6:.0f} MB = {n_all * 28 / bw * 1e3:.0f} ms for all {n_all / 1e6:.1f}M "
              f"parameters, {n_fast * 28 / 1e6:.0f} MB = {n_fast * 28 / bw * 1e3:.0f} ms for the "
              f"{n_fast / 1e6:.1f}M the fast path updates")
        base = None
        for way in ways:
            def run(steps, way=way):
                if way == "obvious":
                    return obvious(args.learner, tok, texts, labels, steps)
                if way == "batched":
                    from dilmbench.batched import train_classifiers_batched

                    models = [ft.load_classifier(args.learner, 2, s, "cpu") for s in range(args.batched_runs)]
                    recipe = ft.FinetuneRecipe(steps=steps, fast=True, micro_batch_tokens=0)  # its requirement
                    return train_classifiers_batched(models, tok, [(texts, labels)] * len(models), recipe,
                                                     list(range(len(models))), "cpu")
                recipe = ft.FinetuneRecipe(steps=steps, cpu_bf16=way == "bf16", fast=way.startswith("fast"),
                                           micro_batch_tokens=0 if way == "fast-1" else "auto")
                return ft.train_classifier(ft.load_classifier(args.learner, 2, 0, "cpu"), tok, texts, labels, recipe,
                                           0, "cpu")

            try:
                run(1)  # once-per-process work out of both timings (the fast path's compiled kernels)
                t = time.perf_counter()
                run(args.warmup)
                t_warm = time.perf_counter() - t
                t = time.perf_counter()
                run(args.warmup + args.steps)
                per_step = (time.perf_counter() - t - t_warm) / args.steps  # set-up (model load) cancels out
            except ImportError as exc:
                print(f"  {way:<8} not available ({exc})")
                continue
            if way == "batched":
                per_step /= args.batched_runs
            base = base or per_step
            print(f"  {way:<8} {per_step * 1e3:6.0f} ms/step{' per run' if way == 'batched' else '        '}"
                  f"  {flops / per_step / 1e9:5.0f} GFLOPS  {base / per_step:5.2f}x the first way")


if __name__ == "__main__":
    main()
