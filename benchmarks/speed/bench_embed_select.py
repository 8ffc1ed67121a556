"""Side-by-side speed of the embedding pass and of coreset selection (issue: the spine).

1. Embedding pass over real SST-2 train texts: length-sorted batches padded to each batch's longest text (dilmbench)
   against the obvious implementation (original order, every batch padded to the longest text overall).
2. Selection on a synthetic pool the size of QQP's train split (364k x 768, two classes of 229k / 135k) at DPC 20:
   herding (matrix-vector form, O(N) extra memory per step) against the obvious herding (each step materialises
   the N x d matrix of candidate running means); kcenters with sklearn's k-means (the reference) and with faiss's
   Lloyd iterations from the same k-means++ seeding; farthest-first k-center greedy.

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/bench_embed_select.py [--encoder ID] [--n-texts 4000] [--pool 364000]
"""
import argparse
import time

import numpy as np


def timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def naive_herding(x, k):
    mu = x.mean(0)
    total = np.zeros_like(mu)
    chosen = []
    for t in range(1, k + 1):
        cand = (total[None, :] + x) / t  # N x d running means, built every step
        d = np.linalg.norm(cand - mu[None, :], axis=1)
        d[chosen] = np.inf
        i = int(np.argmin(d))
        chosen.append(i)
        total += x[i]
    return np.asarray(chosen)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoder", default="sentence-transformers/all-MiniLM-L6-v2")
    ap.add_argument("--n-texts", type=int, default=4000)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--pool", type=int, default=364_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--dpc", type=int, default=20)
    args = ap.parse_args()

    import torch
    from transformers import AutoModel

    from dilmbench.embed import encode
    from dilmbench.methods.herding import herding
    from dilmbench.methods.kcenter_greedy import farthest_first
    from dilmbench.cluster import kmeans_labels, nearest_to_centroids
    from dilmbench.models import load_pretrained, load_tokenizer
    from dilmbench.tasks import TASKS, load_split

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    train = load_split(TASKS["sst2"], "train", "embedded")
    rng = np.random.default_rng(0)
    idx = rng.choice(len(train), args.n_texts, replace=False)
    texts = [(train[int(i)]["sentence"],) for i in idx]
    tok, model = load_tokenizer(args.encoder), load_pretrained(AutoModel, args.encoder)
    encode(texts[:256], model, tok, pooling="mean", batch_size=args.batch_size)  # warm-up
    fast, t_fast = timed(encode, texts, model, tok, pooling="mean", batch_size=args.batch_size)
    slow, t_slow = timed(encode, texts, model, tok, pooling="mean", batch_size=args.batch_size,
                         sort_by_length=False, pad_to_longest_text=True)
    print(f"\n[embedding pass] {args.encoder}, {args.n_texts} SST-2 train texts, batch {args.batch_size}")
    print(f"  sorted + dynamic padding : {t_fast:7.2f} s  ({args.n_texts / t_fast:7.0f} texts/s)")
    print(f"  pad to longest, unsorted : {t_slow:7.2f} s  ({args.n_texts / t_slow:7.0f} texts/s)")
    print(f"  speed-up {t_slow / t_fast:.2f}x; max |difference| {np.abs(fast - slow).max():.2e}")

    print(f"\n[selection] synthetic pool {args.pool} x {args.dim} float32, 2 classes (63% / 37%), DPC {args.dpc}")
    x = rng.standard_normal((args.pool, args.dim), dtype=np.float32)
    x += rng.standard_normal((64, args.dim), dtype=np.float32)[rng.integers(64, size=args.pool)] * 2  # clustered
    labels = (rng.random(args.pool) < 0.37).astype(int)
    rows = {"herding": 0.0, "herding (obvious)": 0.0, "kcenters sklearn": 0.0, "kcenters faiss": 0.0, "kcenter_greedy": 0.0}
    for c in (0, 1):
        xc = x[labels == c]
        a, t = timed(herding, xc, args.dpc)
        rows["herding"] += t
        b, t = timed(naive_herding, xc, args.dpc)
        rows["herding (obvious)"] += t
        assert (a == b).all(), "herding implementations disagree"
        (asg, _), t1 = timed(kmeans_labels, xc, args.dpc, 0, "sklearn")
        _, t2 = timed(nearest_to_centroids, xc, np.asarray(asg), args.dpc)
        rows["kcenters sklearn"] += t1 + t2
        (asg, _), t1 = timed(kmeans_labels, xc, args.dpc, 0, "faiss")
        _, t2 = timed(nearest_to_centroids, xc, np.asarray(asg), args.dpc)
        rows["kcenters faiss"] += t1 + t2
        _, t = timed(farthest_first, xc, args.dpc, 0)
        rows["kcenter_greedy"] += t
    for name, t in rows.items():
        print(f"  {name:<20}: {t:7.2f} s")
    print(f"  herding speed-up over the obvious implementation: {rows['herding (obvious)'] / rows['herding']:.1f}x (same picks)")
    print(f"  kcenters faiss vs sklearn: {rows['kcenters sklearn'] / rows['kcenters faiss']:.1f}x")


if __name__ == "__main__":
    main()
