"""ICL: the vLLM and transformers backends on the same prompts, side by side.

Prints each backend's accuracy, the share of queries on which their predictions agree, and queries/s of each
(the throughput ratio); and the transformers backend against the obvious way of scoring (each query with each label
word as its own full sequence, LM head at every position) on the first --obvious-eval queries. The demonstrations are one random DPC-5 SST-2 set (10 texts) in one seeded order.

Usage (vLLM's work must sit under __main__, as here):
  HF_HUB_OFFLINE=1 python benchmarks/speed/bench_icl_backends.py [--model google/gemma-3-270m] [--max-eval 872]
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
    ap.add_argument("--obvious-eval", type=int, default=40, help="queries for the (slow) obvious variant")
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
    print(f"model {args.model}; {len(queries)} SST-2 validation queries; {len(ts)} demonstrations; "
          f"prompt prefix {len(prefix)} characters")
    preds, qps = {}, {}
    variants = [("transformers", {}), ("vllm", {}),
                ("transformers-obvious", {"prefix_cache": False, "narrow_logits": False})]
    for name, opts in variants:
        backend = name.split("-")[0]
        n = len(queries) if name != "transformers-obvious" else min(args.obvious_eval, len(queries))
        ev = ICLEvaluator(learners=[args.model], backend=backend, **opts)
        fn = ev.score_vllm if backend == "vllm" else ev.score_transformers
        fn(args.model, prefix, queries[:4], words, "cpu")  # load and warm up
        t = time.perf_counter()
        scores = fn(args.model, prefix, queries[:n], words, "cpu")
        dt = time.perf_counter() - t
        preds[name] = scores.argmax(1)
        qps[name] = n / dt
        acc = float((preds[name] == labels[:n]).mean())
        print(f"  {name:<21} accuracy {100 * acc:5.1f}% on {n:>3} queries   {qps[name]:6.2f} queries/s   ({dt:.1f} s)")
        ev.close()
    agree = float((preds["transformers"] == preds["vllm"]).mean())
    acc_diff = 100 * abs(float((preds["transformers"] == labels).mean()) - float((preds["vllm"] == labels).mean()))
    n_obv = len(preds["transformers-obvious"])
    agree_obv = float((preds["transformers"][:n_obv] == preds["transformers-obvious"]).mean())
    print(f"  vllm vs transformers: predictions agree on {100 * agree:.2f}% of queries; accuracy difference "
          f"{acc_diff:.2f} points; throughput vllm / transformers {qps['vllm'] / qps['transformers']:.2f}x")
    print(f"  transformers (prefix KV reuse, narrow logits) vs the obvious way (full sequence per label word, "
          f"logits everywhere): {qps['transformers'] / qps['transformers-obvious']:.2f}x queries/s; predictions "
          f"agree on {100 * agree_obv:.2f}% of the first {n_obv}")

if __name__ == "__main__":
    main()
