"""The encoder embedding pass shared by every method that needs embeddings (k-centers, herding, DiLM).

Last-layer [CLS] (the paper's choice) or the attention-masked mean of the last layer; texts are length-sorted and
each batch padded only to its own longest; results are cached on disk per (encoder, pooling, max_length, dtype, texts).

``dtype`` (the run config's ``embed_dtype``): "float32", the paper preset's and every result's before the option
existed, or "bfloat16": the pass under bf16 autocast (matmuls in bf16, layer norms and softmax in float32 as autocast
keeps them), about 3x faster on a CPU with AMX (results/benchmarks/embed_dtype.txt). A different embedding can change
what k-centers or herding pick, so a bf16 set has an identity of its own (the set's ``encoder.dtype``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .batching import collate, length_sorted_batches, tokenize
from .cache import cache_root, stable_hash
from .errors import DilmbenchError
from .tasks import texts_fingerprint

POOLINGS = ("cls", "mean")
DTYPES = ("float32", "bfloat16")


def check_dtype(dtype: str) -> str:
    if dtype not in DTYPES:
        raise DilmbenchError(f"embed_dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    return dtype


def cls_positions(input_ids, attention_mask, cls_id: int | None):
    """Where each row's classification token sits, by the model's own rule: the first occurrence of its CLS token
    (position 0 for BERT and RoBERTa, the end of the text for XLNet, whose tokenizer pads on the left); without a CLS
    token, the first real token."""
    if cls_id is not None:
        hit = input_ids == cls_id
        if bool(hit.any(1).all()):
            return hit.float().argmax(1)
    return attention_mask.float().argmax(1)


def pool_hidden(hidden, attention_mask, pooling: str, input_ids=None, cls_id: int | None = None):
    if pooling == "cls":
        if input_ids is None:
            return hidden[:, 0]
        pos = cls_positions(input_ids, attention_mask, cls_id)
        return hidden[range(hidden.shape[0]), pos]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    raise DilmbenchError(f"unknown pooling '{pooling}'; choose one of {POOLINGS}")


def encode(texts: list[tuple[str, ...]], model, tokenizer, pooling: str = "cls", batch_size: int = 256,
           max_length: int = 128, device: str = "cpu", sort_by_length: bool = True, pad_to_longest_text: bool = False,
           progress: bool = False, desc: str = "embed", dtype: str = "float32") -> np.ndarray:
    """Embed texts with an already-loaded encoder. ``sort_by_length=False, pad_to_longest_text=True`` is the
    obvious implementation (every batch padded to the longest text overall), kept for the benchmark."""
    import torch

    from .progress import progress as progress_bar

    if pooling not in POOLINGS:
        raise DilmbenchError(f"unknown pooling '{pooling}'; choose one of {POOLINGS}")
    check_dtype(dtype)
    feats = tokenize(tokenizer, texts, max_length)
    pad_to = max(len(f["input_ids"]) for f in feats) if pad_to_longest_text and feats else None
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    model.eval()
    batches = length_sorted_batches(feats, batch_size, sort=sort_by_length)
    n_batches = (len(feats) + batch_size - 1) // batch_size
    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
    with torch.inference_mode():
        for idx, fb in progress_bar(batches, total=n_batches, desc=desc, enabled=progress, leave=False):
            batch = collate(tokenizer, fb, device, pad_to=pad_to)
            with autocast:
                hidden = model(**batch).last_hidden_state.float()
            out[idx] = pool_hidden(hidden, batch["attention_mask"], pooling, batch["input_ids"],
                                   tokenizer.cls_token_id).float().cpu().numpy()
    return out


def cached_embeddings(texts: list[tuple[str, ...]], encoder: str, pooling: str = "cls", max_length: int = 128,
                      batch_size: int = 256, device: str = "cpu", cache_dir: Path | None = None,
                      progress: bool = True, dtype: str = "float32") -> np.ndarray:
    """Embeddings of ``texts`` with ``encoder``, computed once and cached on disk (keyed by the texts themselves)."""
    from transformers import AutoModel

    from .models import load_pretrained, load_tokenizer

    key = stable_hash({"encoder": encoder, "pooling": pooling, "max_length": max_length,
                       "texts": texts_fingerprint(texts), "n": len(texts),
                       **({"dtype": check_dtype(dtype)} if dtype != "float32" else {})})
    path = Path(cache_dir or cache_root()) / "embeddings" / f"{key}.npy"
    if path.is_file():
        try:
            arr = np.load(path)
            if arr.shape[0] == len(texts):
                return arr
        except (ValueError, OSError):
            pass  # truncated cache file: recompute
    tokenizer = load_tokenizer(encoder)
    model = load_pretrained(AutoModel, encoder).to(device)
    arr = encode(texts, model, tokenizer, pooling=pooling, batch_size=batch_size, max_length=max_length,
                 device=device, progress=progress, desc=f"embed {encoder.split('/')[-1]}", dtype=dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{np.random.randint(1 << 30)}.tmp.npy")
    np.save(tmp, arr)
    tmp.replace(path)
    return arr


_ENCODERS: dict = {}


def embed_texts(texts: list[tuple[str, ...]], encoder: str, pooling: str, device: str,
                dtype: str = "float32") -> np.ndarray:
    """Embeddings of texts a method wrote (not cached on disk: they change with every set); the encoder is loaded
    once per process and device."""
    if (encoder, device) not in _ENCODERS:
        from transformers import AutoModel

        from .models import load_pretrained, load_tokenizer

        _ENCODERS[(encoder, device)] = (load_pretrained(AutoModel, encoder).to(device), load_tokenizer(encoder))
    model, tok = _ENCODERS[(encoder, device)]
    return encode(texts, model, tok, pooling=pooling, device=device, dtype=dtype)
