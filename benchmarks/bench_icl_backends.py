"""ICL: the vLLM and transformers backends on the same prompts, side by side.

Prints each backend's accuracy, the share of queries on which their predictions agree, and queries/s of each
(the throughput ratio). The demonstrations are one random DPC-5 SST-2 set (10 texts) in one seeded order.

Usage (vLLM's work must sit under __main__, as here):
  HF_HUB_OFFLINE=1 python benchmarks/bench_icl_backends.py [--model google/gemma-3-270m] [--max-eval 872]
"""
import argparse
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="google/gemma-3-270m")
    ap.add_argument("--max-eval", type=int, default=872)
    ap.add_argument("--dpc", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from dilmbench.api import MethodContext
    from dilmbench.evaluators.icl import ICLEvaluator, build_prefix, format_example, label_words
    from dilmbench.registry import METHODS
    from dilmbench.tasks import TASKS, load_task_data

    task = TASKS["sst2"]
    data = load_task_data(task, "embedded")
    ctx = MethodContext(data=data, encoder="", pooling="mean", device="cpu", cache_dir=None, progress=False)
    ts = METHODS.get("random")().make_set(ctx, args.dpc, args.seed, 0)
    order = np.random.default_rng(args.seed).permutation(len(ts)).tolist()
    words = label_words(task, None)
    prefix = build_prefix(task.text_fields, [(ts.texts[i], ts.labels[i]) for i in order], words)
    texts = data.texts("eval")[: args.max_eval]
    labels = data.labels("eval")[: args.max_eval]
    queries = [format_example(task.text_fields, t, None) for t in texts]
    print(f"model {args.model}; {len(queries)} SST-2 validation queries; {len(ts)} demonstrations")
    preds = {}
    for backend in ("transformers", "vllm"):
        ev = ICLEvaluator(learners=[args.model], backend=backend)
        fn = ev.score_vllm if backend == "vllm" else ev.score_transformers
        fn(args.model, prefix, queries[:4], words, "cpu")  # load and warm up
        t = time.perf_counter()
        scores = fn(args.model, prefix, queries, words, "cpu")
        dt = time.perf_counter() - t
        preds[backend] = scores.argmax(1)
        acc = float((preds[backend] == labels).mean())
        print(f"  {backend:<12} accuracy {100 * acc:5.1f}%   {len(queries) / dt:6.1f} queries/s   ({dt:.1f} s)")
        preds[backend + "_qps"] = len(queries) / dt
    agree = float((preds["transformers"] == preds["vllm"]).mean())
    acc_diff = 100 * abs(float((preds["transformers"] == labels).mean()) - float((preds["vllm"] == labels).mean()))
    print(f"  agreement {100 * agree:.2f}% of queries; accuracy difference {acc_diff:.2f} points; "
          f"throughput vllm / transformers {preds['vllm_qps'] / preds['transformers_qps']:.2f}x")


if __name__ == "__main__":
    main()
