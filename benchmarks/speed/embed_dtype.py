"""The pool's embedding pass in float32 against bf16 autocast (the quick preset's ``embed_dtype``), and what the
difference does to the sets k-centers and herding pick from it.

1. Time: the whole SST-2 pool (65,349 texts; the quick preset's pool) embedded by all-MiniLM-L6-v2 with mean pooling,
   each way, 2 threads (the README main job's setting), length-sorted batches of 256 as dilmbench does.
2. Closeness: per text, the cosine between its float32 and its bf16 embedding.
3. Selection: herding (deterministic) and k-centers (seeds as the quick grid's set 0-4) at DPC 5 / 10 / 20 on each
   embedding: how many of the picked pool rows the two share. (A different pick is a different set with an identity of
   its own; whether it scores differently is for a grid to say, not this script.)

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/embed_dtype.py [--threads 2] [--n 0 (all)]
Output committed: results/benchmarks/embed_dtype.txt
"""
import argparse
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=0, help="embed only the first N pool texts (0: all)")
    a = ap.parse_args()

    import torch
    from transformers import AutoModel

    from dilmbench.cluster import k_centers
    from dilmbench.embed import encode
    from dilmbench.models import load_pretrained, load_tokenizer
    from dilmbench.registry import METHODS
    from dilmbench.tasks import TASKS, load_task_data

    torch.set_num_threads(a.threads)
    data = load_task_data(TASKS["sst2"], "embedded", dev_size=2000)
    texts, labels = data.texts("pool"), np.asarray(data.labels("pool"))
    if a.n:
        texts, labels = texts[:a.n], labels[:a.n]
    tok, model = load_tokenizer(a.encoder), load_pretrained(AutoModel, a.encoder)
    encode(texts[:512], model, tok, pooling="mean")  # warm-up (allocator, oneDNN primitives)
    emb, secs = {}, {}
    for dtype in ("float32", "bfloat16"):
        t = time.perf_counter()
        emb[dtype] = encode(texts, model, tok, pooling="mean", dtype=dtype)
        secs[dtype] = time.perf_counter() - t
    print(f"SST-2 pool, {len(texts):,} texts, {a.encoder}, mean pooling, batches of 256 sorted by length, "
          f"{a.threads} threads, torch {torch.__version__}")
    for dtype in emb:
        print(f"  {dtype:9s} {secs[dtype]:6.1f} s  ({len(texts) / secs[dtype]:,.0f} texts/s)")
    print(f"  bf16 / float32: {secs['float32'] / secs['bfloat16']:.2f}x faster")
    x, y = emb["float32"], emb["bfloat16"]
    cos = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
    print(f"cosine(float32, bf16) per text: min {cos.min():.4f}, 1st percentile {np.percentile(cos, 1):.4f}, "
          f"median {np.median(cos):.5f}")
    print("rows picked from both embeddings, per class summed (DPC x 2 rows per set):")
    herding = METHODS.get("herding")()
    for dpc in (5, 10, 20):
        same_h, same_k, total_k = 0, 0, 0
        for c in (0, 1):
            rows = np.flatnonzero(labels == c)
            rng = lambda: np.random.default_rng([0, c])  # noqa: E731  (herding ignores it)
            h = [set(rows[herding.select(e[rows], dpc, rng())].tolist()) for e in (x, y)]
            same_h += len(h[0] & h[1])
            for s in range(5):
                k = [set(rows[k_centers(e[rows], dpc, 1000 + s)].tolist()) for e in (x, y)]
                same_k += len(k[0] & k[1])
                total_k += dpc
        print(f"  DPC {dpc:2d}: herding {same_h} of {2 * dpc}; k-centers {same_k} of {total_k} (5 seeds)")


if __name__ == "__main__":
    main()
