"""DiLM stage 1 (LM training) step, side by side: one padded batch, length-sorted micro-batches, and packed rows
(``lm_pack``: Generator.packed_example_losses, with torch's sdpa and with the eager attention the method trains with).

Same model, same batches, same gradient (tests/test_dilm.py checks the losses, gradients and trained weights agree in
float32): the batch loss is the mean of per-example losses every way; micro-batches and packing only skip the
padding's compute (packing also the output embedding where no token is predicted). The ways take turns step by step
(A B C A B C ...), so a machine whose speed drifts slows them alike. Prints seconds per step, the ratios to one padded
batch, the padding share of the padded batches, and (``--check``) the largest float32 loss difference packed vs padded.

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/bench_dilm_lm_step.py [--generator ID] [--batch 16] [--steps 6]
       [--micro-tokens 128[,512...]] [--pack] [--bf16] [--check] [--max-length 64] [--task sst2 --data-dir DIR]
"""
import argparse
import contextlib
import time

import numpy as np
import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--generator", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--micro-tokens", default="128", help="comma-separated micro-batch budgets to time")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--data-dir", default="embedded", help="a folder in the hub's parquet layout (pair tasks)")
    ap.add_argument("--pack", action="store_true", help="time packed rows too (sdpa and eager attention)")
    ap.add_argument("--bf16", action="store_true", help="under CPU bfloat16 autocast, as the quick preset trains")
    ap.add_argument("--check", action="store_true", help="print the float32 loss difference, packed vs padded")
    ap.add_argument("--quick-layout", action="store_true",
                    help="the quick preset's example layout (label-word class tokens, the start token first)")
    args = ap.parse_args()
    budgets = [int(x) for x in args.micro_tokens.split(",") if x]

    from dilmbench.finetune import micro_batches
    from dilmbench.methods.dilm import Generator
    from dilmbench.tasks import TASKS, load_task_data

    task = TASKS[args.task]
    data = load_task_data(task, args.data_dir)
    texts, labels = data.texts("pool"), data.labels("pool")
    gen = Generator.from_pretrained(args.generator, task.num_labels,
                                    class_init="label_words" if args.quick_layout else "eos",
                                    label_names=task.label_names, bos_prefix=args.quick_layout)
    gen.model.train()
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(texts), args.batch, replace=False) for _ in range(args.steps + 1)]
    seqs_per = [[gen.encode_example(texts[i], int(labels[i]), args.max_length) for i in b] for b in batches]
    real = sum(len(s) for seqs in seqs_per for s in seqs)
    padded = sum(len(seqs) * max(len(s) for s in seqs) for seqs in seqs_per)
    print(f"generator {args.generator}; {args.task} batches of {args.batch}, at most {args.max_length} tokens; "
          f"{torch.get_num_threads()} threads; {'bfloat16 autocast' if args.bf16 else 'float32'}; "
          f"padding is {100 * (1 - real / padded):.0f}% of the padded batches' tokens")
    if args.check:
        gen.model.eval()
        with torch.no_grad():
            diffs = [float((gen.example_losses(seqs, "cpu") - gen.packed_example_losses(seqs, "cpu")).abs().max())
                     for seqs in seqs_per]
        print(f"  float32, eval mode: largest per-example loss difference packed vs padded {max(diffs):.1e}")
        gen.model.train()
    amp = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if args.bf16 else (lambda: contextlib.nullcontext())
    ways = [("one padded batch", 0, None)] + [(f"micro-batches <= {b} tokens", b, None) for b in budgets]
    if args.pack:
        ways += [("packed rows, sdpa", None, "sdpa"), ("packed rows, eager", None, "eager")]
    times = {}
    for k, seqs in enumerate(seqs_per):
        for name, micro, attn in ways:
            t = time.perf_counter()
            gen.model.zero_grad(set_to_none=True)
            if attn is None:
                for chunk in micro_batches([len(x) for x in seqs], micro):
                    with amp():
                        part = gen.example_losses([seqs[i] for i in chunk], "cpu").sum() / len(seqs)
                    part.backward()
            else:
                gen.model.set_attn_implementation(attn)
                with amp():
                    loss = gen.packed_example_losses(seqs, "cpu").sum() / len(seqs)
                loss.backward()
                gen.model.set_attn_implementation("sdpa")
            if k:  # the first is a warm-up
                times.setdefault(name, []).append(time.perf_counter() - t)
    base = np.mean(times["one padded batch"])
    for name, v in times.items():
        print(f"  {name:<28} {np.mean(v):6.2f} s/step (forward + backward, {args.steps} steps)   "
              f"{base / np.mean(v):.2f}x one padded batch")


if __name__ == "__main__":
    main()
