"""The fine-tuning recipe's definition (DiLM's evaluation protocol), shared by the reference path
(dilmbench.finetune), the fast path (dilmbench.fastpath) and the batched path (dilmbench.batched).

200 steps, AdamW lr 1e-4 (weight decay 0.01, none on biases and norm weights), cosine schedule with warmup ratio 0.5,
gradient clipping 1.0, batch min(64, |set|) drawn from a seeded shuffle without replacement (partial last batch
dropped, as the reference's endless DataLoader does), a fresh classifier head per run.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import asdict, dataclass

import numpy as np

# the fast path's version (dilmbench.fastpath), part of a fast-path result's identity; bump when a change alters its
# numbers. Here rather than in fastpath.py so that planning a grid (identities, a dry run) does not import torch.
#   1  per-tensor AdamW on float32 copies of the gradients
#   2  flat AdamW buffers; packed rows for BERT-family learners
#   3  a learner's training attention always the eager math (decoders without attention dropout took torch's sdpa,
#      whose CPU backward is slow at a step's shapes), and causal where the batch has no padding (a decoder with
#      attention dropout, GPT-2, attended to later tokens then); encoders with attention dropout: unchanged
FAST_PATH_VERSION = 3
# A run's identity has carried the version only since version 3 (before, it reached the evaluator's identity but not
# the run's): a fast-path run without it was made at version 2 (or 1, which cannot be told apart any more).
FAST_PATH_UNRECORDED = 2
# Encoder families whose fast path version 3 left as version 2 had it (their attention has dropout, which took the
# eager math already): the version of their runs stays 2, so their finished results stay valid.
_ENCODERS_SINCE_2 = {"bert", "roberta", "xlnet", "distilbert", "albert", "electra", "xlm-roberta", "camembert",
                     "mpnet", "deberta", "deberta-v2"}
_LEARNER_VERSION: dict = {}
_UNREAD: set = set()  # learners whose config could not be read (fast_path_version)


def fast_path_version(learner: str) -> int:
    """The fast path's version as it concerns ``learner``: the last version that changed its numbers. Read from the
    model's config where one is here (a folder, $DILMBENCH_MODEL_MAP, the Hugging Face cache, the configs the dry run
    knows); a model whose config cannot be read counts as changed by the newest version."""
    if learner not in _LEARNER_VERSION:
        from .cost import KNOWN_CONFIGS, local_config
        from .models import resolve_model

        cfg = local_config(resolve_model(learner)) or KNOWN_CONFIGS.get(learner) or {}
        if not cfg:
            _UNREAD.add(learner)
        dropout = next((cfg[k] for k in ("attention_probs_dropout_prob", "attention_dropout", "dropout")
                        if isinstance(cfg.get(k), (int, float))), None)
        unchanged = cfg.get("model_type") in _ENCODERS_SINCE_2 and not cfg.get("is_decoder") and dropout != 0
        _LEARNER_VERSION[learner] = 2 if unchanged else FAST_PATH_VERSION
    return _LEARNER_VERSION[learner]


def fast_path_version_known(learner: str) -> bool:
    """Whether fast_path_version read ``learner``'s config here (False: it assumed the newest version)."""
    fast_path_version(learner)
    return learner not in _UNREAD


@dataclass(frozen=True)
class FinetuneRecipe:
    steps: int = 200
    lr: float = 1e-4
    weight_decay: float = 0.01
    scheduler: str = "cosine"
    warmup_ratio: float = 0.5
    max_grad_norm: float = 1.0
    max_batch_size: int = 64
    max_length: int = 128
    eval_batch_size: int = 256
    # Each step's batch may be run as length-sorted micro-batches of at most this many (padded) tokens, with the
    # losses summed over the whole batch before one optimizer step: the same gradient, far less padding compute.
    # 0 = one padded batch. "auto" in configs resolves to 0 on CUDA and 512 on CPU.
    micro_batch_tokens: int | str = "auto"
    # On a CPU, run the forward passes (training and evaluation) under bfloat16 autocast, as every CUDA run does;
    # weights, gradients and optimizer state stay float32. About 2x faster where the CPU has AVX512-BF16 or AMX
    # (results/benchmarks/cpu_bf16.txt). Off by default, and then left out of a result's identity.
    cpu_bf16: bool = False
    # The fast path (dilmbench.fastpath): the same protocol with bf16 autocast on every device, the embedding trained
    # as the rows the set uses, flat AdamW buffers, and dropout masks from the run's own stream (a new random stream,
    # so a new configuration). Off by default, and then left out of a result's identity.
    fast: bool = False
    # Which version of the fast path to run: 0, the newest (FAST_PATH_VERSION); 2 runs a decoder as version 2 did
    # (sdpa in training, padded micro-batches), so that a folder made at version 2 can declare and reproduce its runs.
    # It reaches a result's identity as the learner's fast-path version (fast_path_version), not as an option.
    fast_version: int = 0

    def fast_path(self, learner_version: int) -> int:
        """The fast-path version a run of a learner (whose own version is ``learner_version``) is made at."""
        return learner_version if not self.fast_version else min(int(self.fast_version), learner_version)

    def __post_init__(self):
        if self.fast_version not in (0, 2, FAST_PATH_VERSION):
            from .errors import DilmbenchError

            raise DilmbenchError(f"fast_version must be 0 (the newest), 2 or {FAST_PATH_VERSION}, not "
                                 f"{self.fast_version!r} (version 1 cannot be run any more)")

    def micro_tokens(self, device: str) -> int:
        if self.micro_batch_tokens == "auto":
            return 0 if str(device).startswith("cuda") else 512
        return int(self.micro_batch_tokens)

    @property
    def bf16(self) -> bool:
        """Whether a CPU runs this recipe under bfloat16 autocast (CUDA always does)."""
        return bool(self.cpu_bf16 or self.fast)

    def batch_size(self, n: int) -> int:
        return max(1, min(self.max_batch_size, n))

    def to_dict(self) -> dict:
        return asdict(self)


def autocast_for(device: str, cpu_bf16: bool = False):
    """bfloat16 autocast on CUDA always, on a CPU when asked (FinetuneRecipe.cpu_bf16); float32 otherwise."""
    import torch

    if str(device).startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if cpu_bf16 and str(device).startswith("cpu"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return nullcontext()


def optimizer_groups(model) -> tuple[list, list]:
    """The trainable parameters as (decayed, not decayed): no decay on biases and normalisation weights."""
    import torch

    decay, no_decay, seen = [], [], set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, torch.nn.LayerNorm) or "norm" in type(module).__name__.lower()
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:  # tied weights (embeddings / LM head) appear twice
                continue
            seen.add(id(p))
            (no_decay if pname == "bias" or is_norm else decay).append(p)
    return decay, no_decay


def endless_batches(n: int, batch_size: int, seed: int):
    """Index batches: shuffle, cut into full batches (drop the partial last), reshuffle; forever."""
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield perm[start:start + batch_size]


def micro_batches(lengths, max_tokens: int) -> list[np.ndarray]:
    """Split positions 0..n-1 into length-sorted chunks whose padded size (rows x longest) is at most max_tokens."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    if max_tokens <= 0:
        return [order]
    chunks, start = [], 0
    while start < len(order):
        longest = lengths[order[start]]
        rows = max(1, max_tokens // max(1, longest))
        chunks.append(order[start:start + rows])
        start += rows
    return chunks
