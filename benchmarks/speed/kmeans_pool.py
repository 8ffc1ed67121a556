"""k-means for k-centers selection at pool scale: sklearn (the reference: k-means++, full data), faiss from the same
k-means++ seeding, and faiss's sampled recipe (random init on <= 256 points per centroid, then one assignment pass).
Prints side by side, per backend: seconds for all selections of a task (DPC 5/10/20 x SETS sets x 2 classes) on a
synthetic pool of QQP's train size (364k x 768), and the k-means inertia relative to sklearn's on real embeddings
(the cached SST-2 pool, MiniLM) for the same selections.

Usage: OMP_NUM_THREADS=2 python benchmarks/speed/kmeans_pool.py [--sets 20] [--pool 364000]
"""
import argparse
import time

import numpy as np

from dilmbench.cluster import k_centers, kmeans_labels


def inertia(x, assign, k):
    return float(sum(((x[assign == j] - x[assign == j].mean(0)) ** 2).sum() for j in range(k) if (assign == j).any()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", type=int, default=20)
    ap.add_argument("--pool", type=int, default=364_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--backends", default="sklearn,faiss,faiss-sampled")
    args = ap.parse_args()
    import torch

    backends = args.backends.split(",")
    print(f"torch threads {torch.get_num_threads()}; selections: DPC 5/10/20 x {args.sets} sets x 2 classes")
    rng = np.random.default_rng(0)
    # a clustered synthetic pool (64 Gaussian blobs) of QQP's size, classes 63% / 37%
    centres = rng.normal(size=(64, args.dim)).astype(np.float32)
    x = (centres[rng.integers(0, 64, args.pool)] + 0.8 * rng.normal(size=(args.pool, args.dim))).astype(np.float32)
    y = (rng.random(args.pool) < 0.37).astype(int)
    classes = [np.ascontiguousarray(x[y == c]) for c in (0, 1)]
    # the SST-2 pool's MiniLM embeddings, as the quick preset makes them (cached after the first run)
    from dilmbench.config import MINILM
    from dilmbench.embed import cached_embeddings
    from dilmbench.tasks import TASKS, load_task_data

    pool = load_task_data(TASKS["sst2"], "embedded", 2000, 0).texts("pool")
    emb = cached_embeddings(pool, MINILM, "mean", progress=False).astype(np.float32)
    cases = [(dpc, s) for dpc in (5, 10, 20) for s in range(3)]
    refs = {case: inertia(emb, np.asarray(kmeans_labels(emb, case[0], seed=case[1], backend="sklearn")[0]), case[0])
            for case in cases}
    for b in backends:
        t0 = time.perf_counter()
        for dpc in (5, 10, 20):
            for s in range(args.sets):
                for c, xc in enumerate(classes):
                    k_centers(xc, dpc, seed=1000 * dpc + 10 * s + c, backend=b)
        secs = time.perf_counter() - t0
        line = f"  {b:14s}: {secs:8.1f} s for {3 * args.sets * 2} selections on {args.pool} x {args.dim}"
        ratios = []
        for dpc, s in cases:
            got, _ = kmeans_labels(emb, dpc, seed=s, backend=b)
            ratios.append(inertia(emb, np.asarray(got), dpc) / refs[(dpc, s)])
        line += (f"; inertia / sklearn's on the real SST-2 pool ({emb.shape[0]} x {emb.shape[1]}): "
                 f"mean {np.mean(ratios):.4f}, worst {np.max(ratios):.4f}")
        print(line, flush=True)


if __name__ == "__main__":
    main()
