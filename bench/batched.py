"""Many learners in one pass: R runs of a cell (same learner, same set size, each its own set, data order, dropout
stream and fresh head) trained as one model whose every weight has a leading run dimension.

Why: one run's step is a few hundred small kernels (a batch of 10-64 short texts). On a GPU each kernel's launch and
Python dispatch cost ~10-20 us while its arithmetic takes less, so a step is overhead: BERT-base's ~1,500 kernels a
step are ~20 ms of overhead against ~1 ms of bf16 arithmetic for 10 x 64 tokens on an H100. R runs in one pass launch
the same kernels once for all R (each a batched matmul or an elementwise op R times as large), so a step costs about
the same until the arithmetic dominates: the expected gain is min(R, overhead / arithmetic per run), ~10-20x at
R = 20-100 for the paper's learners (a model, not a measurement: no GPU was lent when it was written). On a CPU a step is bound by its work, not by dispatch
(results/benchmarks/finetune_roofline.txt), so the runner leaves it off there unless asked.

What each run gets is what the one-at-a-time fast path gives it with one padded batch per step (micro_batch_tokens
0, the CUDA default): the same batches in the same row order, dropout masks drawn from the run's own stream in the
run's own padded layout (then padded to the group's), the same fresh head, AdamW with its own clipping factor. Only
float rounding differs (batched matmuls; the layer norm's affine applied after the normalisation): tests/test_batched.py
holds per-step losses and final logits to a stated tolerance.

Supported: models whose parameters all live in nn.Linear, nn.LayerNorm and nn.Embedding (BERT, RoBERTa, MiniLM,
ELECTRA-style encoders). Others (XLNet's raw attention parameters, GPT-2's Conv1D, RMSNorm decoders) raise
NotBatchable, and the caller trains them one at a time.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from .fastpath import CompactEmbedding, DropoutStream, MasterAdamW, Padder, use_stream_dropout


class NotBatchable(Exception):
    """The model has parameters outside the module kinds the batched path knows."""


class Group:
    """What the grouped modules need to know about the current step: runs, rows per run, each run's padded length."""

    def __init__(self, runs: int):
        self.R = runs
        self.rows = 0
        self.lengths: list[int] = []


class GroupedLinear(torch.nn.Module):
    def __init__(self, mods, group: Group):
        super().__init__()
        self.g = group
        self.weight = torch.nn.Parameter(torch.stack([m.weight.detach() for m in mods]))  # R x out x in
        self.bias = None if mods[0].bias is None else torch.nn.Parameter(torch.stack([m.bias.detach() for m in mods]))

    def forward(self, x):
        shape = x.shape
        xr = x.reshape(self.g.R, -1, shape[-1])
        wt = self.weight.transpose(1, 2)
        y = torch.bmm(xr, wt) if self.bias is None else torch.baddbmm(self.bias[:, None, :], xr, wt)
        return y.reshape(*shape[:-1], y.shape[-1])


class GroupedLayerNorm(torch.nn.Module):
    def __init__(self, mods, group: Group):
        super().__init__()
        self.g, self.normalized_shape, self.eps = group, mods[0].normalized_shape, mods[0].eps
        self.weight = torch.nn.Parameter(torch.stack([m.weight.detach() for m in mods]))
        self.bias = torch.nn.Parameter(torch.stack([m.bias.detach() for m in mods]))

    def forward(self, x):
        y = F.layer_norm(x, self.normalized_shape, None, None, self.eps).reshape(self.g.R, -1, x.shape[-1])
        return torch.addcmul(self.bias[:, None, :], y, self.weight[:, None, :]).reshape(x.shape)


class GroupedEmbedding(torch.nn.Module):
    def __init__(self, mods, group: Group):
        super().__init__()
        self.g = group
        self.weight = torch.nn.Parameter(torch.stack([m.weight.detach() for m in mods]))  # R x V x H
        self.padding_idx = mods[0].padding_idx
        if self.padding_idx is not None:  # as nn.Embedding: the padding row gets no gradient
            self.weight.register_hook(lambda grad: grad.index_fill(1, torch.tensor([self.padding_idx],
                                                                                    device=grad.device), 0))
        for hook in mods[0]._forward_pre_hooks.values():  # the compact embedding's id map (the same for every run)
            self.register_forward_pre_hook(hook)

    def forward(self, ids):
        R, V, H = self.weight.shape
        if ids.shape[0] == 1:  # ids shared by every row (position ids): each run's own table, repeated per row
            out = self.weight[:, ids[0]]  # R x ... x H
            return out.repeat_interleave(self.g.rows, dim=0)
        offsets = (torch.arange(R, device=ids.device) * V).repeat_interleave(self.g.rows)
        return F.embedding(ids + offsets.view(-1, *[1] * (ids.dim() - 1)), self.weight.reshape(R * V, H))


class GroupedStreams:
    """The runs' dropout streams behind one dropout call: each run's mask is drawn from its own stream in its own
    padded layout (rows x its own length), then padded to the group's length, exactly as that run alone would draw
    it. Layouts: (rows, hidden), (rows, length, hidden), (rows, heads, length, length)."""

    def __init__(self, streams: list[DropoutStream], group: Group):
        self.streams, self.g = streams, group

    def dropout(self, x, p: float):
        if p <= 0:
            return x
        rows, L = self.g.rows, x.shape[-2] if x.dim() == 4 else (x.shape[1] if x.dim() == 3 else None)
        masks = []
        for r, stream in enumerate(self.streams):
            own = list(x.shape)
            own[0] = rows
            if x.dim() == 3:
                own[1] = self.g.lengths[r]
            elif x.dim() == 4:
                own[2] = own[3] = self.g.lengths[r]
            elif x.dim() != 2:
                raise NotBatchable(f"dropout on a {x.dim()}-d tensor")
            m = stream.keep_mask(tuple(own), p, x.dtype)
            if x.dim() == 3:
                m = F.pad(m, (0, 0, 0, L - own[1]))
            elif x.dim() == 4:
                m = F.pad(m, (0, L - own[3], 0, L - own[2]))
            masks.append(m)
        from .fastpath import ScaledMask

        return ScaledMask.apply(x, torch.cat(masks).to(x.device), 1.0 / (1.0 - p))


KINDS = {torch.nn.Linear: GroupedLinear, torch.nn.LayerNorm: GroupedLayerNorm, torch.nn.Embedding: GroupedEmbedding}


def grouped_model(models, group: Group):
    """One model of models[0]'s structure whose Linear / LayerNorm / Embedding modules hold every run's weights."""
    template = copy.deepcopy(models[0])
    names = [n for n, m in template.named_modules() if type(m) in KINDS or isinstance(m, torch.nn.Embedding)]
    per_run = [dict(m.named_modules()) for m in models]
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = template.get_submodule(parent_name) if parent_name else template
        mods = [pr[name] for pr in per_run]
        kind = KINDS.get(type(mods[0])) or GroupedEmbedding
        setattr(parent, child, kind(mods, group))
    grouped = {id(p) for n in names for p in template.get_submodule(n).parameters()}
    stray = [n for n, p in template.named_parameters() if id(p) not in grouped]
    if stray:
        raise NotBatchable(f"{type(models[0]).__name__} has parameters outside Linear / LayerNorm / Embedding "
                           f"modules (e.g. {stray[0]})")
    return template, names


def _group_batch(group: Group, padders, idxs, device):
    """One step's batch for every run: each run's rows in the order it would take them alone (length-sorted), padded
    to the group's longest; the group learns each run's own padded length (its dropout masks are drawn in it)."""
    from .recipe import micro_batches

    rows = [idx[micro_batches(p.lengths[idx], 0)[0]] for p, idx in zip(padders, idxs)]
    group.rows = len(rows[0])
    group.lengths = [int(p.lengths[r].max()) for p, r in zip(padders, rows)]
    parts = [p.batch(r, width=max(group.lengths)) for p, r in zip(padders, rows)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}, rows


def _write_back(model, names, models) -> None:
    """Each run's slice of the grouped weights into its own model."""
    by_name = dict(model.named_modules())
    with torch.no_grad():
        for r, m in enumerate(models):
            own = dict(m.named_modules())
            for name in names:
                for pname, p in by_name[name].named_parameters(recurse=False):
                    getattr(own[name], pname).data.copy_(p.data[r])


def train_classifiers_batched(models, tokenizer, sets, recipe, seeds, device: str, weights=None,
                              dtype=torch.bfloat16) -> list[list[float]]:
    """Train ``models`` (same architecture, fresh heads) on ``sets`` [(texts, labels), ...] of one size, run r with
    seed seeds[r], in one pass per step; fine-tunes each model in place and returns each run's per-step losses."""
    from .batching import tokenize
    from .recipe import endless_batches

    R = len(models)
    if not (R == len(sets) == len(seeds)):
        raise ValueError("one set and one seed per model")
    if recipe.micro_tokens(device):
        raise ValueError("the batched path runs one padded batch per step: it needs micro_batch_tokens 0")
    sizes = {len(t) for t, _ in sets}
    if len(sizes) != 1:
        raise ValueError(f"the batched path needs sets of one size, got {sorted(sizes)}")
    n = sizes.pop()
    padders = [Padder(tokenizer, tokenize(tokenizer, texts, recipe.max_length), device) for texts, _ in sets]
    labels = [torch.as_tensor(np.asarray(y), dtype=torch.long) for _, y in sets]
    w = None if weights is None else [None if x is None else torch.as_tensor(np.asarray(x, dtype=np.float32))
                                      for x in weights]
    union = np.unique(np.concatenate([np.concatenate(p.rows["input_ids"]) for p in padders]
                                     + [np.asarray([padders[0].pad["input_ids"]])]))
    streams = [DropoutStream(s) for s in seeds]
    for st in streams:
        st.sdpa_v2 = recipe.fast_version == 2  # (see train_classifier_fast)
    for m, s in zip(models, streams):
        if use_stream_dropout(m, s)["attention_dropout_from_torch"]:
            raise NotBatchable(f"{type(m).__name__}'s attention dropout runs inside torch's attention kernel, where "
                               "each run's own stream cannot reach it (a newer transformers routes it through the "
                               "attention interface)")
    compacts = [CompactEmbedding(m, union) for m in models]
    group = Group(R)
    try:
        model, names = grouped_model(models, group)
    except NotBatchable:
        for m, c in zip(models, compacts):
            c.restore(1.0)
        raise
    gs = GroupedStreams(streams, group)
    for m in model.modules():
        if hasattr(m, "stream"):
            m.stream = gs
        if hasattr(m, "_dilmbench_stream"):
            m._dilmbench_stream = gs
    emb = model.get_input_embeddings()
    opt = MasterAdamW(model, recipe, recipe.steps, dtype, embedding=emb.weight if compacts[0].active else None,
                      runs=R)
    model.to(device).train()
    batches = [endless_batches(n, recipe.batch_size(n), s) for s in seeds]
    losses: list[list[float]] = [[] for _ in range(R)]
    for _ in range(recipe.steps):
        batch, rows = _group_batch(group, padders, [next(b) for b in batches], device)
        logits = model(**batch).logits.float()
        y = torch.cat([labels[r][rows[r]] for r in range(R)]).to(device)
        ce = F.cross_entropy(logits, y, reduction="none").view(R, -1)
        if w is not None:
            ce = ce * torch.stack([torch.ones(len(rows[r])) if w[r] is None else w[r][rows[r]]
                                   for r in range(R)]).to(device)
        per_run = ce.sum(1) / group.rows
        opt.zero_grad()
        per_run.sum().backward()
        opt.step()
        for r, v in enumerate(per_run.detach().tolist()):
            losses[r].append(v)
    opt.finish(model)
    _write_back(model, names, models)
    for c in compacts:
        c.restore(opt.embedding_decay())
    return losses
