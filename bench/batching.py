"""Length-sorted batches with dynamic padding, shared by the embedding pass and every evaluation pass."""
from __future__ import annotations

from functools import lru_cache

import numpy as np


def uses_segment_ids(config) -> bool:
    """Whether a model reads segment (token type) ids: BERT-style models with more than one type, and XLNet (its
    relative segment encoding), whose transformers 5 tokenizer no longer returns them unless asked. RoBERTa (one type)
    does not."""
    if getattr(config, "model_type", None) == "xlnet":
        return True
    return (getattr(config, "type_vocab_size", 0) or 0) > 1


@lru_cache(maxsize=64)
def _segments_for(name_or_path: str) -> bool | None:
    try:
        from transformers import AutoConfig

        from .models import resolve_model

        return uses_segment_ids(AutoConfig.from_pretrained(resolve_model(name_or_path)))
    except Exception:
        return None


def wants_segment_ids(tokenizer) -> bool:
    """By the model the tokenizer belongs to; failing that, by the tokenizer's own input names."""
    found = _segments_for(getattr(tokenizer, "name_or_path", "") or "")
    if found is not None:
        return found
    return "token_type_ids" in getattr(tokenizer, "model_input_names", ())


def tokenize(tokenizer, texts: list[tuple[str, ...]], max_length: int) -> list[dict]:
    """Tokenize single texts or pairs (kept as pairs all the way to the tokenizer); no padding."""
    cols = list(zip(*texts)) if texts else [[]]
    kw = {"truncation": True, "max_length": max_length, "return_token_type_ids": wants_segment_ids(tokenizer)}
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
