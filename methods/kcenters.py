"""kcenters: DiLM's k-centers baseline (k-means per class, the real example nearest each centroid)."""
import numpy as np

from dilmbench.api import SelectionMethod
from dilmbench.cluster import k_centers


class KCentersMethod(SelectionMethod):
    """Per class, k-means with k = DPC on encoder embeddings; keep the real text nearest each centroid (DiLM's K-centers)."""

    needs_embeddings = True
    default_config = {"backend": "sklearn", "max_iter": 300}

    def select(self, emb: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        return k_centers(emb, k, int(rng.integers(2**31 - 1)), self.config["backend"], self.config["max_iter"])
