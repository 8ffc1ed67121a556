"""A decoder learner's training step on the fast path: fast-path version 2 (attention through torch's sdpa, padded
micro-batches) against version 3 (the eager attention's matmuls, texts packed into rows), and the step between
them (eager attention, padded), interleaved in one process, beside the attention alone.

Why: a SmolLM2-135M-Instruct step (DPC 5, 10 texts) spent a fifth of its time in sdpa's backward on this CPU; its
fused kernel is made for long sequences, and a step's are 10-60 tokens.

Ways, each timed per step after warm-up steps, in turn (A B C A B C ...) so that a drift of the machine's speed falls
on all:
  sdpa    version 2: a model without attention dropout (Llama, Gemma) trained through torch's
          scaled_dot_product_attention, on length-sorted padded micro-batches of at most 512 tokens
  eager   q k^T, the mask, a float32 softmax, probs v, as torch ops (what the fast path already did for a model with
          attention dropout), the same padded micro-batches
  packed  version 3: eager attention, the step's texts end to end in rows of 64 tokens (fastpath.Packer), forwards of
          at most 1,024 tokens

Usage: HF_HUB_OFFLINE=1 DILMBENCH_DATA_DIR=... python benchmarks/speed/decoder_attention.py [--threads 1] [--dpc 5,20]
Output committed: results/benchmarks/decoder_attention.txt
"""
import argparse
import os
import time

import numpy as np
import torch


def sdpa_in_training(new):
    """The fast path's attention function as version 2 had it: sdpa whenever attention has no dropout."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        if module.training and dropout == 0:
            return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                          **kwargs)
        return new(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs)

    return attention


def attention_alone(shape, kv_heads, reps=20) -> dict:
    """Forward + backward of one layer's attention on ``shape`` (batch, heads, tokens, head dim), bf16, causal."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    import dilmbench.fastpath as fp

    b, h, n, d = shape
    mod = torch.nn.Module()
    mod.is_causal, mod.num_key_value_groups, mod.training = True, h // kv_heads, True
    mod._dilmbench_stream = fp.DropoutStream(0)
    q = torch.randn(b, h, n, d, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(b, kv_heads, n, d, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(b, kv_heads, n, d, dtype=torch.bfloat16, requires_grad=True)
    mask = torch.ones(n, n, dtype=torch.bool).tril()[None, None].expand(b, 1, n, n)
    out = {}
    for name, fn in (("sdpa", sdpa_attention_forward), ("eager", fp._attention_with_stream)):
        for i in range(reps + 3):
            if i == 3:
                t = time.perf_counter()
            o, _ = fn(mod, q, k, v, mask, scaling=d ** -0.5, dropout=0.0)
            o.float().sum().backward()
        out[name] = (time.perf_counter() - t) / reps
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--learner", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dpc", default="5,20")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import dilmbench.fastpath as fp
    import dilmbench.finetune as ft
    from dilmbench.tasks import TASKS, load_split
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(args.learner)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs; learner {args.learner} "
          f"({cfg.num_hidden_layers} layers, {cfg.num_attention_heads} heads, {cfg.num_key_value_heads} kv heads, "
          f"head dim {head_dim}); per step: {args.steps} timed steps after {args.warmup}, {args.rounds} rounds in turn")
    print("\none layer's attention, forward + backward, bf16, causal mask (ms):")
    for b, n in ((10, 38), (40, 40), (64, 60)):
        t = attention_alone((b, cfg.num_attention_heads, n, head_dim), cfg.num_key_value_heads)
        print(f"  {b:3d} texts x {n:3d} tokens: sdpa {t['sdpa'] * 1e3:6.2f}  eager {t['eager'] * 1e3:6.2f}  "
              f"({t['sdpa'] / t['eager']:.2f}x)")

    train = load_split(TASKS["sst2"], "train", "embedded")
    tok = ft.learner_tokenizer(args.learner)
    new = fp._attention_with_stream
    ways = {"sdpa": (sdpa_in_training(new), False), "eager": (new, False), "packed": (new, True)}
    first = [(train[0]["sentence"],), (train[1]["sentence"],)]
    ft.train_classifier(ft.load_classifier(args.learner, 2, 0, "cpu"), tok, first, [0, 1],
                        ft.FinetuneRecipe(steps=1, fast=True), 0, "cpu")  # once-per-process compiling, out of the timings
    for dpc in (int(d) for d in args.dpc.split(",")):
        rng = np.random.default_rng(dpc)
        lab = np.asarray(train["label"])
        idx = np.concatenate([rng.choice(np.flatnonzero(lab == c), dpc, replace=False) for c in (0, 1)])
        texts, labels = [(train[int(i)]["sentence"],) for i in idx], [int(lab[i]) for i in idx]
        tokens = sum(len(tok(t[0])["input_ids"]) for t in texts)
        print(f"\nDPC {dpc}: batch {len(texts)}, {tokens} tokens; ms per training step (fast path, bf16)")
        times = {w: [] for w in ways}
        losses = {}
        for _ in range(args.rounds):
            for way, (fn, pack) in ways.items():
                fp._attention_with_stream = fn

                def run(steps, pack=pack):
                    recipe = ft.FinetuneRecipe(steps=steps, fast=True)
                    return fp.train_classifier_fast(ft.load_classifier(args.learner, 2, 0, "cpu"), tok, texts, labels,
                                                    recipe, 0, "cpu", pack=pack)
                try:
                    t = time.perf_counter()
                    run(args.warmup)
                    t_warm = time.perf_counter() - t
                    t = time.perf_counter()
                    losses[way] = run(args.warmup + args.steps)
                    times[way].append((time.perf_counter() - t - t_warm) / args.steps)
                finally:
                    fp._attention_with_stream = new
        for way in ways:
            print(f"  {way:<6} " + "  ".join(f"{x * 1e3:6.0f}" for x in times[way])
                  + f"   median {np.median(times[way]) * 1e3:6.0f}")
        for way in ("eager", "packed"):
            print(f"  sdpa / {way}, round by round: "
                  + "  ".join(f"{a / b:.2f}x" for a, b in zip(times["sdpa"], times[way])))
        for way in ("eager", "packed"):
            diff = np.abs(np.asarray(losses["sdpa"]) - np.asarray(losses[way]))
            print(f"  per-step losses, {way} against sdpa (same seed, {len(diff)} steps of the last round): largest "
                  f"difference {diff.max():.4f}")


if __name__ == "__main__":
    main()
