"""DiLM stage 1 (LM training) step, side by side: one padded batch against length-sorted micro-batches.

Same model, same batches, same gradient (tests/test_dilm.py checks the trained weights agree): the batch loss is
the mean of per-example losses either way; the micro-batches only skip the padding's compute. Prints seconds per
step for both, the ratio, and the padding share of the padded batch.

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/bench_dilm_lm_step.py [--generator ID] [--batch 16] [--steps 6]
       [--micro-tokens 128[,512...]] [--max-length 64] [--task sst2 --data-dir DIR]
"""
import argparse
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
    args = ap.parse_args()
    budgets = [int(x) for x in args.micro_tokens.split(",")]

    from dilmbench.finetune import micro_batches
    from dilmbench.methods.dilm import Generator
    from dilmbench.tasks import TASKS, load_task_data

    task = TASKS[args.task]
    data = load_task_data(task, args.data_dir)
    texts, labels = data.texts("pool"), data.labels("pool")
    gen = Generator.from_pretrained(args.generator, task.num_labels)
    gen.model.train()
    rng = np.random.default_rng(0)
    batches = [rng.choice(len(texts), args.batch, replace=False) for _ in range(args.steps + 1)]
    seqs_per = [[gen.encode_example(texts[i], int(labels[i]), args.max_length) for i in b] for b in batches]
    real = sum(len(s) for seqs in seqs_per for s in seqs)
    padded = sum(len(seqs) * max(len(s) for s in seqs) for seqs in seqs_per)
    print(f"generator {args.generator}; {args.task} batches of {args.batch}, at most {args.max_length} tokens; "
          f"{torch.get_num_threads()} threads; "
          f"padding is {100 * (1 - real / padded):.0f}% of the padded batches' tokens")
    times = {}
    for name, micro in [("one padded batch", 0)] + [(f"micro-batches <= {b} tokens", b) for b in budgets]:
        for k, seqs in enumerate(seqs_per):
            t = time.perf_counter()
            gen.model.zero_grad(set_to_none=True)
            for chunk in micro_batches([len(x) for x in seqs], micro):
                (gen.example_losses([seqs[i] for i in chunk], "cpu").sum() / len(seqs)).backward()
            if k:  # the first is a warm-up
                times.setdefault(name, []).append(time.perf_counter() - t)
        print(f"  {name:<28} {np.mean(times[name]):6.2f} s/step (forward + backward, {args.steps} steps)")
    base = np.mean(times["one padded batch"])
    for name, v in times.items():
        if name != "one padded batch":
            print(f"  speed-up of {name}: {base / np.mean(v):.2f}x")


if __name__ == "__main__":
    main()
