"""How fast issue 30's two CPU wall-time targets could possibly run on this sitting's CPU: a lower bound on the work.

Targets: the 45-run quick SST-2 grid (random, kcenters, herding x DPC 5/10/20 x 5 sets, fast path, 2 cores) in
<= 600 s, and the README's main job (the pool's encoder pass, then random, k-centers and herding at DPC 5) in <= 90 s.

The bound counts only the encoder's linear layers (the matmuls a transformer cannot skip), over the real tokens (no
padding), and nothing else: no attention scores, softmax, layer norms, GELU, dropout, optimizer or data handling.
  train step   6 x P x T   (forward 2 x P x T, backward 4 x P x T: input and weight gradients)
  eval pass    2 x P x T over the 872 validation sentences, once a run
  encoder pass 2 x P x T over the 65,349 pool sentences, once (k-centers and herding share it)
P is the encoder's linear weights (the learner's own model), T a step's tokens with the special ones, truncated at
the recipe's max_length. Every step of these runs trains on the whole set (batch min(64, |set|) and |set| <= 40).
The rate is the best bf16 matmul rate one thread reaches over the step's own shapes (rows 64-2048 x the layers'
three weight shapes x forward, input-gradient and weight-gradient orientation): an upper bound on a core's rate, so
work / (2 cores x that rate) is a lower bound on the wall time. Printed beside the target and the committed
measurement, and at the best bf16 rate this project's VM has shown (1,677 GFLOPS on one thread,
results/benchmarks/finetune_roofline.txt; a sitting with AMX).

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/target_floors.py [--sets results/benchmarks/quick_grid_fast]
Output committed: results/benchmarks/target_floors.txt (--sets results/benchmarks/quick_grid_fast_no_amx: the grid as it
ran on the sitting the floors were measured on)
"""
import argparse
import json
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
BEST_SEEN_BF16_GFLOPS = 1677  # results/benchmarks/finetune_roofline.txt, "measured: bf16 matmul"
COMMITTED = {"grid": ("results/benchmarks/quick_grid_wall.json", 600), "readme": ("results/benchmarks/readme_main_job.txt", 90)}


def best_bf16_rate(hidden: int, inter: int, reps: int = 30) -> float:
    """The best FLOP/s of one thread's bf16 matmuls over a step's shapes."""
    best = 0.0
    for m in (64, 128, 256, 512, 1024, 2048):
        for k, n in ((hidden, hidden), (hidden, inter), (inter, hidden)):
            a, w, g = (torch.randn(m, k, dtype=torch.bfloat16), torch.randn(n, k, dtype=torch.bfloat16),
                       torch.randn(m, n, dtype=torch.bfloat16))
            for f in (lambda: a @ w.t(), lambda: g @ w, lambda: g.t() @ a):
                for _ in range(3):
                    f()
                t = time.perf_counter()
                for _ in range(reps):
                    f()
                best = max(best, 2 * m * k * n * reps / (time.perf_counter() - t))
    return best


def cpu_label() -> str:
    """The CPU's name (grid_executors.cpu_name) and whether it has AMX-BF16 and AVX512-BF16."""
    from grid_executors import cpu_name  # (this folder, first on sys.path when a script here runs)

    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    return (f"{cpu_name()}, {'AMX-BF16' if 'amx_bf16' in flags else 'no AMX'}, "
            f"{'avx512_bf16' if 'avx512_bf16' in flags else 'no avx512_bf16'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=Path, default=ROOT / "results/benchmarks/quick_grid_fast",
                    help="a results folder holding the grid's 45 runs and their sets")
    a = ap.parse_args()
    torch.set_num_threads(1)

    from transformers import AutoConfig, AutoModel

    from dilmbench.models import load_tokenizer, resolve_model
    from dilmbench.recipe import FinetuneRecipe
    from dilmbench.tasks import TASKS, load_split
    from dilmbench.textset import load_textset

    runs = [json.loads(p.read_text()) for p in sorted((a.sets / "runs").rglob("*.json"))]
    if not runs:
        raise SystemExit(f"no runs under {a.sets / 'runs'}")
    learner = runs[0]["learner"]
    if any(r["learner"] != learner for r in runs):
        raise SystemExit("the runs use more than one learner")
    cfg = AutoConfig.from_pretrained(resolve_model(learner))
    model = AutoModel.from_config(cfg)
    p_lin = sum(m.weight.numel() for m in model.encoder.modules() if isinstance(m, torch.nn.Linear))
    tok = load_tokenizer(learner)
    recipe = FinetuneRecipe()

    def tokens(texts) -> int:
        return sum(len(ids) for ids in tok(list(texts), truncation=True, max_length=recipe.max_length)["input_ids"])

    task = TASKS["sst2"]
    t_val = tokens(load_split(task, "validation", "embedded")["sentence"])
    t_pool = tokens(load_split(task, "train", "embedded")["sentence"])

    set_tokens: dict[str, int] = {}
    grid = {"train": 0.0, "eval": 0.0}
    per_run = []
    for r in runs:
        rel = r["textset"]["path"]
        if rel not in set_tokens:
            if not (a.sets / rel).is_file():
                raise SystemExit(f"run {r['method']} DPC {r['dpc']} set {r['set_index']}: its set {rel} is not in the folder")
            set_tokens[rel] = tokens(" ".join(t) for t in load_textset(a.sets / rel, task).texts)
        if 2 * r["dpc"] > recipe.max_batch_size:
            raise SystemExit(f"DPC {r['dpc']}: a step no longer sees the whole set; this bound assumes it does")
        train = recipe.steps * 6 * p_lin * set_tokens[rel]
        grid["train"] += train
        grid["eval"] += 2 * p_lin * t_val
        per_run.append((r, train))
    dpc5 = {r["method"]: tr for r, tr in per_run if r["dpc"] == 5 and r["set_index"] == 0}
    readme = {"encoder pass": 2 * p_lin * t_pool, "train": sum(dpc5.values()), "eval": 3 * 2 * p_lin * t_val}

    rate = best_bf16_rate(cfg.hidden_size, cfg.intermediate_size)
    folder = a.sets.relative_to(ROOT) if a.sets.is_relative_to(ROOT) else a.sets
    print(f"# HF_HUB_OFFLINE=1 python benchmarks/speed/target_floors.py --sets {folder}   ({cpu_label()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__})")
    print(f"learner {learner}: {p_lin / 1e6:.2f}M encoder linear weights; validation {t_val:,} tokens, pool {t_pool:,} "
          f"tokens; {len(runs)} grid runs from {folder}")
    print(f"this sitting's best bf16 matmul, one thread: {rate / 1e9:.0f} GFLOPS (the best this VM has shown: "
          f"{BEST_SEEN_BF16_GFLOPS})")
    for job, work in (("grid", grid), ("readme", readme)):
        total = sum(work.values())
        src, target = COMMITTED[job]
        name = "45-run quick grid" if job == "grid" else "README main job"
        print(f"\n{name}: {total / 1e12:.1f} TFLOP of linear-layer matmuls at least ("
              + ", ".join(f"{k} {v / 1e12:.1f}" for k, v in work.items()) + ")")
        here = total / (2 * rate)
        best = total / (2 * BEST_SEEN_BF16_GFLOPS * 1e9)
        print(f"  floor on 2 cores: {here:.0f} s at this sitting's rate, {best:.0f} s at the best seen; target {target} s "
              f"({'below' if target < here else 'above'} this sitting's floor); committed measurement in {src}")
    measured = [(r, tr) for r, tr in per_run if r.get("timing_s", {}).get("train")]
    if measured:
        secs = sum(r["timing_s"]["train"] for r, _ in measured)
        print(f"\nthe folder's grid as it ran ({len(measured)} runs, 2 workers x 1 thread, their timing_s.train): "
              f"{secs:.0f} s of training summed over runs, "
              f"{sum(tr for _, tr in measured) / secs / 1e9:.0f} GFLOPS of these matmuls a thread on average, "
              f"{sum(tr for _, tr in measured) / rate / secs:.2f} of this sitting's best rate")
        for dpc in sorted({r["dpc"] for r, _ in measured}):
            sel = [(r, tr) for r, tr in measured if r["dpc"] == dpc]
            s = sum(r["timing_s"]["train"] for r, _ in sel)
            print(f"  DPC {dpc:>2}: {s / len(sel):5.1f} s a run, {sum(tr for _, tr in sel) / s / 1e9:4.0f} GFLOPS; "
                  f"its floor {sum(tr for _, tr in sel) / len(sel) / rate:5.1f} s a run at this sitting's best rate")


if __name__ == "__main__":
    main()
