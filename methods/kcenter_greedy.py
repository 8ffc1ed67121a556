"""kcenter_greedy: farthest-first traversal per class (Sener & Savarese's k-center coreset)."""
import numpy as np

from dilmbench.api import SelectionMethod


def farthest_first(x: np.ndarray, k: int, first: int) -> np.ndarray:
    """Greedy k-center: each step adds the point farthest from the chosen set. O(N) extra memory."""
    x = np.asarray(x, dtype=np.float32)
    sq = np.einsum("ij,ij->i", x, x)
    chosen = [first]
    min_d = sq - 2 * x @ x[first] + sq[first]
    min_d[first] = -np.inf
    for _ in range(k - 1):
        nxt = int(np.argmax(min_d))
        chosen.append(nxt)
        np.minimum(min_d, sq - 2 * x @ x[nxt] + sq[nxt], out=min_d)
        min_d[chosen] = -np.inf
    return np.asarray(chosen)


class KCenterGreedyMethod(SelectionMethod):
    """Per class, farthest-first traversal from a seeded random start on encoder embeddings (Sener & Savarese)."""

    needs_embeddings = True

    def select(self, emb: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        return farthest_first(emb, k, int(rng.integers(len(emb))))
