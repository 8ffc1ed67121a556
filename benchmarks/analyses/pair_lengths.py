"""How long the pair tasks' examples are in the DiLM generator's own format, to choose the quick preset's pair lengths.

    HF_HUB_OFFLINE=1 python benchmarks/analyses/pair_lengths.py [--data-dir ../shared/data/glue-subsets] [--n 3000]

For each pair task, encodes n pool pairs as the generator sees them in training (start token, class token, text1,
separator, text2, end-of-text) with the quick preset's generator tokenizer, and prints the share longer than the
training truncation (max_length) and the share whose generated part (after the class token, end-of-text included)
is longer than max_new_tokens, for the single-text values and for the pair overrides.
"""
from __future__ import annotations

import argparse

import numpy as np

from dilmbench.methods.dilm import QUICK
from dilmbench.models import load_tokenizer
from dilmbench.tasks import TASKS, load_task_data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="../shared/data/glue-subsets")
    ap.add_argument("--n", type=int, default=3000)
    args = ap.parse_args()
    tok = load_tokenizer(QUICK["generator"])
    over = QUICK["pair_overrides"]
    print(f"generator tokenizer {QUICK['generator']}; {args.n} pool pairs per task (seed 0)")
    print(f"{'task':6} {'mean':>6} {'p50':>5} {'p90':>5} {'p99':>5}  "
          f"{'>max_length ' + str(QUICK['max_length']):>16} {'>' + str(over['max_length']):>6}  "
          f"{'>new tokens ' + str(QUICK['max_new_tokens']):>16} {'>' + str(over['max_new_tokens']):>6}")
    for name in ("mnli", "qqp"):
        data = load_task_data(TASKS[name], args.data_dir, 0)
        texts = data.texts("pool")
        rows = np.random.default_rng(0).choice(len(texts), min(args.n, len(texts)), replace=False)
        # [start] [class] text1 <sep> text2 [eos]: 4 tokens besides the texts; the generated part is all but 2
        total = np.array([4 + sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts[i]) for i in rows])
        new = total - 2
        pct = lambda m: f"{100 * m.mean():.1f}%"  # noqa: E731
        print(f"{name:6} {total.mean():6.1f} {np.percentile(total, 50):5.0f} {np.percentile(total, 90):5.0f} "
              f"{np.percentile(total, 99):5.0f}  {pct(total > QUICK['max_length']):>16} {pct(total > over['max_length']):>6}  "
              f"{pct(new > QUICK['max_new_tokens']):>16} {pct(new > over['max_new_tokens']):>6}")


if __name__ == "__main__":
    main()
