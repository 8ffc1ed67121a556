"""k-means primitives shared by methods (k-centers selection, DiLM's teacher sets and diverse mini-batches)."""
from __future__ import annotations

import numpy as np

from .errors import DilmbenchError


def kmeans_labels(x: np.ndarray, k: int, seed: int, backend: str = "sklearn", max_iter: int = 300):
    """k-means with k-means++ seeding and one init -> (assignments, centroids).

    ``sklearn`` is the reference implementation's choice; ``faiss`` runs Lloyd's iterations from the same
    k-means++ seeding; ``faiss-sampled`` is faiss's own large-pool recipe (random init, fitted on a subsample)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if k > len(x):
        raise DilmbenchError(f"cannot form {k} clusters from {len(x)} points")
    if backend == "sklearn":
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=max_iter, random_state=seed).fit(x)
        return km.labels_, km.cluster_centers_.astype(np.float32)
    if backend == "faiss":
        import faiss
        from sklearn.cluster import kmeans_plusplus

        init, _ = kmeans_plusplus(x, k, random_state=seed)
        km = faiss.Kmeans(x.shape[1], k, niter=max_iter, nredo=1, seed=seed % (2**31), verbose=False)
        km.train(x, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
        _, assign = km.index.search(x, 1)
        return assign[:, 0], km.centroids
    if backend == "faiss-sampled":
        # faiss's own recipe for large pools: Lloyd's iterations from a random init on a random subsample of at most
        # 256 points per centroid, then every point assigned to its nearest centroid once (the choice for pool-scale
        # selection: benchmarks/kmeans_pool.py measures its inertia against sklearn's k-means++)
        import faiss

        km = faiss.Kmeans(x.shape[1], k, niter=min(max_iter, 25), nredo=1, seed=seed % (2**31), verbose=False,
                          max_points_per_centroid=256)
        km.train(x)
        _, assign = km.index.search(x, 1)
        return assign[:, 0], km.centroids
    raise DilmbenchError(f"unknown k-means backend '{backend}'; choose sklearn, faiss or faiss-sampled")


def nearest_to_centroids(x: np.ndarray, assign: np.ndarray, k: int) -> np.ndarray:
    """For each cluster, the member nearest its mean (as DiLM's reference implementation)."""
    picked = []
    for j in range(k):
        members = np.flatnonzero(assign == j)
        if len(members) == 0:
            raise DilmbenchError(f"k-means produced an empty cluster (k={k}); the class has too few distinct texts")
        centre = x[members].mean(0)
        picked.append(members[np.argmin(((x[members] - centre) ** 2).sum(1))])
    return np.asarray(picked)


def k_centers(x: np.ndarray, k: int, seed: int, backend: str = "sklearn", max_iter: int = 300) -> np.ndarray:
    """Indices of the k real points nearest the k-means centroids."""
    assign, _ = kmeans_labels(x, k, seed, backend, max_iter)
    return nearest_to_centroids(x, np.asarray(assign), k)
