"""kcenters: DiLM's k-centers baseline (k-means per class, the real example nearest each centroid)."""
import numpy as np

from dilmbench.api import SelectionMethod
from dilmbench.errors import DilmbenchError


def kmeans_labels(x: np.ndarray, k: int, seed: int, backend: str = "sklearn", max_iter: int = 300):
    """k-means (k-means++ init, one init) -> (assignments, centroids)."""
    if backend == "sklearn":
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=k, init="k-means++", n_init=1, max_iter=max_iter, random_state=seed).fit(x)
        return km.labels_, km.cluster_centers_.astype(np.float32)
    if backend == "faiss":
        import faiss

        from sklearn.cluster import kmeans_plusplus

        x = np.ascontiguousarray(x, dtype=np.float32)
        init, _ = kmeans_plusplus(x, k, random_state=seed)  # same k-means++ seeding as sklearn; faiss's Lloyd steps
        km = faiss.Kmeans(x.shape[1], k, niter=max_iter, nredo=1, seed=seed % (2**31), verbose=False)
        km.train(x, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
        _, assign = km.index.search(x, 1)
        return assign[:, 0], km.centroids
    raise DilmbenchError(f"unknown k-means backend '{backend}'; choose sklearn or faiss")


def nearest_to_centroids(x: np.ndarray, assign: np.ndarray, k: int) -> np.ndarray:
    """For each cluster, the member nearest its mean (as the reference implementation)."""
    picked = []
    for j in range(k):
        members = np.flatnonzero(assign == j)
        if len(members) == 0:
            raise DilmbenchError(f"k-means produced an empty cluster (k={k}); the class has too few distinct texts")
        centre = x[members].mean(0)
        picked.append(members[np.argmin(((x[members] - centre) ** 2).sum(1))])
    return np.asarray(picked)


class KCentersMethod(SelectionMethod):
    """Per class, k-means with k = DPC on encoder embeddings; keep the real text nearest each centroid (DiLM's K-centers)."""

    needs_embeddings = True
    default_config = {"backend": "sklearn", "max_iter": 300}

    def select(self, emb: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        seed = int(rng.integers(2**31 - 1))
        assign, _ = kmeans_labels(emb, k, seed, self.config["backend"], self.config["max_iter"])
        return nearest_to_centroids(emb, np.asarray(assign), k)
