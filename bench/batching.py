"""Length-sorted batches with dynamic padding, shared by the embedding pass and every evaluation pass."""
from __future__ import annotations

import numpy as np


def tokenize(tokenizer, texts: list[tuple[str, ...]], max_length: int) -> list[dict]:
    """Tokenize single texts or pairs (kept as pairs all the way to the tokenizer); no padding."""
    cols = list(zip(*texts)) if texts else [[]]
    # segment ids wherever the model takes them (XLNet's tokenizer no longer returns them unless asked)
    kw = {"truncation": True, "max_length": max_length,
          "return_token_type_ids": "token_type_ids" in getattr(tokenizer, "model_input_names", ())}
    if len(cols) == 1:
        enc = tokenizer(list(cols[0]), **kw)
    else:
        enc = tokenizer(list(cols[0]), list(cols[1]), **kw)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(texts))]


def length_sorted_batches(features: list[dict], batch_size: int, sort: bool = True):
    """Yield (indices, features) batches, longest first when sorting, so each batch pads only to its own longest."""
    order = np.argsort([-len(f["input_ids"]) for f in features], kind="stable") if sort else np.arange(len(features))
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        yield idx, [features[i] for i in idx]


def collate(tokenizer, feats: list[dict], device, pad_to: int | None = None) -> dict:
    if pad_to is None:
        batch = tokenizer.pad(feats, padding="longest", return_tensors="pt")
    else:
        batch = tokenizer.pad(feats, padding="max_length", max_length=pad_to, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}
