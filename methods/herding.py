"""herding: Welling's herding per class."""
import numpy as np

from dilmbench.api import SelectionMethod


def herding(x: np.ndarray, k: int) -> np.ndarray:
    """Each step picks the unchosen point that brings the running mean closest to the class mean (argmin)."""
    x = np.asarray(x, dtype=np.float32)
    mu = x.mean(0)
    sq = np.einsum("ij,ij->i", x, x)
    total = np.zeros_like(mu)
    chosen: list[int] = []
    for t in range(1, k + 1):
        target = t * mu - total  # want x_i closest to this: ||t*mu - (total + x_i)||^2
        d = sq - 2 * x @ target
        d[chosen] = np.inf
        i = int(np.argmin(d))
        chosen.append(i)
        total += x[i]
    return np.asarray(chosen)


class HerdingMethod(SelectionMethod):
    """Per class, Welling's herding on encoder embeddings: greedily keep the running mean closest to the class mean."""

    needs_embeddings = True

    def select(self, emb: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        return herding(emb, k)  # deterministic: rng unused
