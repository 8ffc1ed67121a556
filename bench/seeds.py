"""Seeds derived from identities, never from order: the same parts give the same seed on any machine or worker."""
from __future__ import annotations

import hashlib


def derive_seed(*parts) -> int:
    """A deterministic 31-bit seed from any parts, e.g. (base, task, method, dpc, set, init)."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
