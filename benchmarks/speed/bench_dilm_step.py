"""One DiLM generator update, side by side: dilmbench's way against the reference's (full autograd through the learner).

Same models, same inputs, same math (the equivalence is a test: tests/test_dilm.py). An update is, per class:
the real-data head gradient, the generator's per-example losses (with grad), the weighted synthetic head gradient
(create_graph), 1 - cos, backward into the generator; then the generator's optimizer step and the learner's real
training steps (`learner_steps`, the evaluation recipe) before the next update.

Also prints the share of the update spent in the passes the algorithm cannot avoid: the learner's real steps,
the learner's forward passes (body features), the generator's forward and backward.

With --quick, also the quick preset's update under bf16 autocast, padded and packed (DiLM's lm_pack and learner_pack:
the generator's losses on packed rows with eager attention, the learner's real steps as fastpath.PackedSteps).

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/bench_dilm_step.py [--generator ID] [--learner ID] [--syn-batch 16]
       [--real-batch 64] [--learner-steps 20] [--repeats 2] [--quick] [--no-reference]
"""
import argparse
import contextlib
import time

import numpy as np
import torch


class Clock:
    def __init__(self):
        self.t = {}

    def add(self, key, dt):
        self.t[key] = self.t.get(key, 0.0) + dt


def one_update(way, gen, learner, tok, real_feats, syn_seqs, syn_feats, gen_opt, l_opt, l_sched, recipe, steps_feats,
               learner_steps, clock, packed=None):
    from dilmbench.batching import collate
    from dilmbench.finetune import train_step
    from dilmbench.methods.dilm import body_outputs, head_gradient, head_gradient_full_autograd, matching_loss

    C = len(real_feats)
    gen.model.train()
    learner.eval()
    gen_opt.zero_grad(set_to_none=True)
    for c in range(C):
        labels_r = torch.full((len(real_feats[c]),), c)
        labels_s = torch.full((len(syn_seqs[c]),), c)
        rb, sb = collate(tok, real_feats[c], "cpu"), collate(tok, syn_feats[c], "cpu")
        t = time.perf_counter()
        ours = way != "full autograd"
        bf16 = way.startswith("bf16")
        amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
        if ours:  # (the learner's matching passes in float32, as DiLM's update runs them)
            out_r = body_outputs(learner, rb)
            clock.add("learner forward (body)", time.perf_counter() - t)
            t = time.perf_counter()
            g_real = head_gradient(learner, rb, labels_r, outputs=out_r)
            clock.add("head gradients", time.perf_counter() - t)
        else:
            g_real = head_gradient_full_autograd(learner, rb, labels_r).detach()
            clock.add("learner forward+backward (full)", time.perf_counter() - t)
        t = time.perf_counter()
        if way == "bf16, packed":  # as DiLM's update runs it with lm_pack
            gen.model.set_attn_implementation("eager")
            with amp():
                gl = gen.packed_example_losses(syn_seqs[c], "cpu")
            gen.model.set_attn_implementation("sdpa")
        else:
            with amp():
                gl = gen.example_losses(syn_seqs[c], "cpu")
        w = torch.softmax(-gl.float(), dim=0)
        clock.add("generator forward", time.perf_counter() - t)
        t = time.perf_counter()
        if ours:
            out_s = body_outputs(learner, sb)
            clock.add("learner forward (body)", time.perf_counter() - t)
            t = time.perf_counter()
            g_syn = head_gradient(learner, sb, labels_s, weights=w, create_graph=True, outputs=out_s)
            loss = matching_loss(g_real, g_syn) / C
            clock.add("head gradients", time.perf_counter() - t)
        else:
            g_syn = head_gradient_full_autograd(learner, sb, labels_s, weights=w, create_graph=True)
            loss = matching_loss(g_real, g_syn) / C
            clock.add("learner forward+backward (full)", time.perf_counter() - t)
        t = time.perf_counter()
        loss.backward()
        clock.add("backward to generator" if ours else "backward to generator (through learner)",
                  time.perf_counter() - t)
    t = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(gen.model.parameters(), 1.0)
    gen_opt.step()
    clock.add("generator optimizer step", time.perf_counter() - t)
    t = time.perf_counter()
    learner.train()
    for feats, labels in steps_feats[:learner_steps]:
        if packed is not None:
            packed.step(learner, feats, labels, l_opt, l_sched)
        else:
            train_step(learner, tok, feats, labels, l_opt, l_sched, recipe, "cpu")
    learner.zero_grad(set_to_none=True)
    clock.add("learner real steps", time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--generator", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    ap.add_argument("--learner", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--syn-batch", type=int, default=16)
    ap.add_argument("--real-batch", type=int, default=64)
    ap.add_argument("--learner-steps", type=int, default=20)
    ap.add_argument("--learner-batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true",
                    help="also the quick preset's way: bf16 autocast, padded and then packed (lm_pack, learner_pack)")
    ap.add_argument("--no-reference", action="store_true", help="leave out the full-autograd way")
    args = ap.parse_args()

    from dilmbench.batching import tokenize
    from dilmbench.fastpath import PackedSteps
    from dilmbench.finetune import FinetuneRecipe, load_classifier, make_optimizer
    from dilmbench.methods.dilm import Generator
    from dilmbench.models import load_tokenizer
    from dilmbench.tasks import TASKS, load_split

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; generator {args.generator}, learner {args.learner}")
    print(f"per class: real batch {args.real_batch}, synthetic batch {args.syn_batch}; learner real steps {args.learner_steps} x batch {args.learner_batch}")
    train = load_split(TASKS["sst2"], "train", "embedded")
    rng = np.random.default_rng(0)
    sample = train.select(rng.choice(len(train), 4000, replace=False))
    by_class = {c: [(s,) for s, y in zip(sample["sentence"], sample["label"]) if y == c] for c in (0, 1)}
    gen = Generator.from_pretrained(args.generator, 2)
    tok = load_tokenizer(args.learner)
    real_feats = {c: tokenize(tok, by_class[c][: args.real_batch], 128) for c in (0, 1)}
    syn_texts = {c: by_class[c][args.real_batch: args.real_batch + args.syn_batch] for c in (0, 1)}
    syn_seqs = {c: [gen.encode_example(t, c, 128) for t in syn_texts[c]] for c in (0, 1)}
    syn_feats = {c: tokenize(tok, syn_texts[c], 128) for c in (0, 1)}
    all_texts = [(s,) for s in sample["sentence"]]
    all_labels = torch.as_tensor(sample["label"])
    steps_feats = []
    for i in range(args.learner_steps):
        idx = rng.choice(len(all_texts), args.learner_batch, replace=False)
        steps_feats.append((tokenize(tok, [all_texts[j] for j in idx], 128), all_labels[idx]))
    results = {}
    ways = ["dilmbench"] + ([] if args.no_reference else ["full autograd"])
    ways += ["bf16, padded", "bf16, packed"] if args.quick else []
    for way in ways:
        learner = load_classifier(args.learner, 2, 0, "cpu")
        recipe = FinetuneRecipe(steps=200, cpu_bf16=way.startswith("bf16"))
        l_opt, l_sched = make_optimizer(learner, recipe)
        packed = PackedSteps(learner, tok, recipe, 0, "cpu") if way == "bf16, packed" else None
        gen_opt, _ = make_optimizer(gen.model, FinetuneRecipe(lr=3e-7, steps=100))
        one_update(way, gen, learner, tok, real_feats, syn_seqs, syn_feats, gen_opt, l_opt, l_sched, recipe,
                   steps_feats, 2, Clock(), packed)  # warm-up
        clock = Clock()
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            one_update(way, gen, learner, tok, real_feats, syn_seqs, syn_feats, gen_opt, l_opt, l_sched, recipe,
                       steps_feats, args.learner_steps, clock, packed)
        total = (time.perf_counter() - t0) / args.repeats
        results[way] = (total, {k: v / args.repeats for k, v in clock.t.items()})
    for way, (total, parts) in results.items():
        print(f"\n[{way}] one generator update: {total:.2f} s")
        for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"  {k:<42} {v:7.2f} s  {100 * v / total:5.1f}%")
    if args.quick:
        pad, pack = results["bf16, padded"], results["bf16, packed"]
        print(f"\nbf16: packed update {pad[0] / pack[0]:.2f}x the padded one; learner real steps "
              f"{pad[1]['learner real steps'] / pack[1]['learner real steps']:.2f}x; generator forward + backward "
              f"{(pad[1]['generator forward'] + pad[1]['backward to generator']) / (pack[1]['generator forward'] + pack[1]['backward to generator']):.2f}x")
    if args.no_reference:
        return
    fast, slow = results["dilmbench"][0], results["full autograd"][0]
    print(f"\nspeed-up of one update: {slow / fast:.2f}x  (full autograd {slow:.2f} s / dilmbench {fast:.2f} s)")
    parts = results["dilmbench"][1]
    unavoidable = sum(v for k, v in parts.items() if k in ("learner real steps", "learner forward (body)",
                                                           "generator forward", "backward to generator"))
    print(f"share of the dilmbench update in passes the algorithm cannot avoid "
          f"(learner real steps, learner forward, generator forward and backward): {100 * unavoidable / fast:.1f}%")
    nosteps_fast = fast - parts.get("learner real steps", 0)
    nosteps_slow = slow - results["full autograd"][1].get("learner real steps", 0)
    print(f"matching part only (without the learner's real steps): {nosteps_slow / nosteps_fast:.2f}x")


if __name__ == "__main__":
    main()
