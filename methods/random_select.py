"""random: a class-balanced uniform sample of the pool."""
import numpy as np

from dilmbench.api import SelectionMethod


class RandomMethod(SelectionMethod):
    """Class-balanced uniform sample of real training texts, seeded per set."""

    needs_embeddings = False

    def select(self, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(n, size=k, replace=False)
