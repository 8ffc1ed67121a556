"""k-means primitives shared by methods (k-centers selection, DiLM's teacher sets and diverse mini-batches)."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from .errors import DilmbenchError


@contextmanager
def one_thread(faiss_too: bool = False):
    """Run k-means on one thread. sklearn's k-means splits its sums over the OpenMP threads, so which point lands in
    which cluster changed with the thread count (30,000 SST-2 embeddings, k 10: one seed of three gave other labels
    on 2 threads than on 1), and with it a k-centers set, whose identity holds only its seed: two machines, or a
    driver with 1 or 2 threads, made different sets under one identity. faiss (loaded first) is held by the same
    limit."""
    import sklearn.cluster  # noqa: F401  (loaded before the limit, which reaches only the libraries loaded by then:
    from threadpoolctl import threadpool_limits  # a first k-means in a process ran on all threads without this)

    if faiss_too:
        import faiss  # noqa: F401  (likewise: the limit then holds its OpenMP too)

    with threadpool_limits(limits=1):
        yield


def kmeans_labels(x: np.ndarray, k: int, seed: int, backend: str = "sklearn", max_iter: int = 300):
    """k-means with k-means++ seeding and one init -> (assignments, centroids)."""
    assign, centroids, _ = _kmeans(x, k, seed, backend, max_iter)
    return assign, centroids


def _kmeans(x: np.ndarray, k: int, seed: int, backend: str, max_iter: int):
    """-> (assignments, centroids, each point's squared distance to its centroid, or None for sklearn).

    ``sklearn`` is the reference implementation's choice; ``faiss`` runs Lloyd's iterations from the same
    k-means++ seeding; ``faiss-sampled`` the same on a subsample of at most 1,024 points per centroid, for pools far larger than k."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if k > len(x):
        raise DilmbenchError(f"cannot form {k} clusters from {len(x)} points")
    with one_thread(faiss_too=backend != "sklearn"):
        return _kmeans_fit(x, k, seed, backend, max_iter)


def _kmeans_fit(x: np.ndarray, k: int, seed: int, backend: str, max_iter: int):
    if backend == "sklearn":
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=max_iter, random_state=seed).fit(x)
        return km.labels_, km.cluster_centers_.astype(np.float32), None
    if backend == "faiss":
        import faiss
        from sklearn.cluster import kmeans_plusplus

        init, _ = kmeans_plusplus(x, k, random_state=seed)
        km = faiss.Kmeans(x.shape[1], k, niter=max_iter, nredo=1, seed=seed % (2**31), verbose=False)
        km.train(x, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
        dist, assign = km.index.search(x, 1)
        return assign[:, 0], km.centroids, dist[:, 0]
    if backend == "faiss-sampled":
        # for pools far larger than k: k-means++ seeding and Lloyd's iterations on a seeded random subsample of at most
        # 1,024 points per centroid, then every point assigned to its nearest centroid once (the choice for pool-scale
        # selection: benchmarks/speed/kmeans_pool.py measures its inertia against sklearn's k-means++ on all points; faiss's
        # own recipe, random init on 256 points per centroid, was 1.2% above sklearn's on average and can put two
        # centroids in one well-separated blob)
        import faiss
        from sklearn.cluster import kmeans_plusplus

        rng = np.random.default_rng(seed)
        sample = x if len(x) <= 1024 * k else x[np.sort(rng.choice(len(x), 1024 * k, replace=False))]
        init, _ = kmeans_plusplus(sample, k, random_state=seed)
        km = faiss.Kmeans(x.shape[1], k, niter=min(max_iter, 25), nredo=1, seed=seed % (2**31), verbose=False,
                          max_points_per_centroid=1024)
        km.train(sample, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
        dist, assign = km.index.search(x, 1)
        return assign[:, 0], km.centroids, dist[:, 0]
    raise DilmbenchError(f"unknown k-means backend '{backend}'; choose sklearn, faiss or faiss-sampled")


def _cluster_sizes(assign: np.ndarray, k: int) -> np.ndarray:
    """Members per cluster; an empty cluster is the user's data problem (too few distinct texts), said in one line."""
    counts = np.bincount(assign, minlength=k)
    if (counts == 0).any():
        raise DilmbenchError(f"k-means produced an empty cluster (k={k}); the class has too few distinct texts")
    return counts


def nearest_to_centroids(x: np.ndarray, assign: np.ndarray, k: int) -> np.ndarray:
    """For each cluster, the member nearest its mean (as DiLM's reference implementation)."""
    _cluster_sizes(assign, k)
    picked = []
    for j in range(k):
        members = np.flatnonzero(assign == j)
        centre = x[members].mean(0)
        picked.append(members[np.argmin(((x[members] - centre) ** 2).sum(1))])
    return np.asarray(picked)


def nearest_by_distance(assign: np.ndarray, dist: np.ndarray, k: int) -> np.ndarray:
    """For each cluster, its member with the smallest ``dist`` (to the cluster's centroid); ties: the first."""
    counts = _cluster_sizes(assign, k)
    order = np.lexsort((np.arange(len(assign)), dist, assign))
    return order[np.concatenate([[0], np.cumsum(counts)[:-1]])]


def k_centers(x: np.ndarray, k: int, seed: int, backend: str = "sklearn", max_iter: int = 300) -> np.ndarray:
    """Indices of the k real points nearest the k-means centroids: with sklearn, the member nearest its cluster's mean
    (the reference's rule); with faiss, the member nearest its centroid, read off the assignment pass (the two
    agree once Lloyd's iterations have converged)."""
    assign, _, dist = _kmeans(x, k, seed, backend, max_iter)
    if dist is not None:
        # the assignment pass gave every point its distance to its centroid: the nearest member of each cluster
        # comes from it without another pass over the pool (at pool scale that pass cost as much as the k-means)
        return nearest_by_distance(np.asarray(assign), dist, k)
    return nearest_to_centroids(x, np.asarray(assign), k)
