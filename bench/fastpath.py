"""The fine-tuning recipe's fast path (``FinetuneRecipe(fast=True)``): the same protocol, the work done as the hardware
wants it.

Same as the reference path (``dilmbench.finetune.train_classifier``): the steps, the cosine schedule with warmup,
AdamW (lr, betas, eps, decoupled weight decay, none on biases and norm weights), gradient clipping at the global norm,
the seeded batch order, the fresh head, dropout (same sites, same probability, inverted scaling), the loss. What it
changes, each measured by benchmarks/speed/finetune_roofline.py:

- The model computes in bfloat16 on every device (its weights held in bf16, not re-cast by autocast each step; the
  reference path's ``cpu_bf16`` option autocasts float32 weights); the optimizer keeps float32 master weights and
  moments (below). In float32 (``dtype`` argument) the fast path is the reference math.
- The input embedding is trained as the rows the set uses: a text set touches a few hundred of a vocabulary's 30-250k
  rows, and a row that no text uses gets a zero gradient, so AdamW only decays it (its moments stay zero). Those rows
  are left out of the step (no dense 30522 x 384 gradient to fill, clip and update 200 times) and get the decay they
  would have had, prod_t (1 - lr_t * weight_decay), once at the end. Exact up to float rounding.
- bf16 weights with float32 master weights and moments in flat buffers: the step's bf16 gradients are concatenated
  into one buffer, clipping reads it once (a compiled sum of squares), and one compiled pass per parameter group
  reads the bf16 gradient, updates masters and moments (torch's AdamW math, the clipping factor as its gradient
  scale) and writes the bf16 weights (:class:`MasterAdamW`; where torch.compile is unavailable, torch's fused AdamW
  per parameter). The obvious way (autocast re-casting float32 weights, float32 gradients, a norm and an AdamW over
  each tensor, a copy back) touched every byte of the optimizer state several times a step. Fast-path version 2
  (:data:`VERSION`), in a result's identity: version 1 was the per-tensor way, whose rounding differs.
- Dropout masks come from the run's own random stream (numpy SFC64, 16 bits per element, so the drop probability is
  p rounded to 1/65536) instead of torch's bernoulli, which cost more than the matmuls: a new random stream, so a new
  configuration, recorded in the result's identity. Attention-probability dropout is done by an attention function
  of the suite's, registered with transformers, where the model's attention goes through that interface.
- Batches padded by hand from pre-tokenized rows (no tokenizer.pad per micro-batch).
- A BERT-family learner (MiniLM, BERT) and, since version 3, a Llama or Gemma-3 decoder train on packed rows
  (:class:`Packer`): a step's texts end to end in rows of at most 64 tokens, each with its own positions, attention
  kept within each text (and causal in a decoder), the head on each text's first token (a decoder's: its last). No padding tokens pass through the model (a padded SST-2 batch is 1.5-2x its real tokens) and a forward's
  matmuls are larger; in float32 it is the padded math (tests/test_fastpath.py). Dropout masks then cover other
  shapes than a padded batch's: part of the fast path's version 2. Only where the recipe micro-batches (a CPU's
  default): one padded batch per step (``micro_batch_tokens`` 0, CUDA's default and the batched path's way) and
  other learners keep padded batches.
- Training attention is the eager math for every model whose attention goes through transformers' interface (version
  3; decoders without attention dropout took torch's sdpa before, whose CPU backward is 3-7x slower at a step's
  shapes: benchmarks/speed/decoder_attention.py). ``FinetuneRecipe.fast_version`` 2 runs a decoder as version 2 did.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .recipe import FAST_PATH_VERSION

ATTENTION_NAME = "dilmbench_dropout"
# packed rows (Packer): at most this many tokens a row, and padded tokens a forward under the recipe's "auto"; chosen by benchmarks/speed/fast_packing.py on MiniLM and SST-2 sets (rows of 32-256 tokens, forwards of
# 512-1024 tokens on this CPU)
PACK_ROW_TOKENS = 64
PACK_BATCH_TOKENS = 1024
# joins a fast-path result's identity (the finetune evaluator's); kept in recipe.py, where reading it imports no torch
VERSION = FAST_PATH_VERSION


# ---- dropout from the run's own stream -------------------------------------------------------------------------------
class DropoutStream:
    """A run's dropout masks: 16 random bits per element from numpy's SFC64 seeded with the run's seed; an element is
    dropped when its bits fall below round(p * 65536)."""

    _ONE_BITS = {torch.bfloat16: 0x3F80, torch.float16: 0x3C00}

    def __init__(self, seed: int):
        self.bitgen = np.random.SFC64(int(seed))

    def keep_mask(self, shape, p: float, dtype) -> torch.Tensor:
        """A {0, 1} tensor of ``dtype`` and ``shape``: 1 where the element is kept."""
        n = int(np.prod(shape))
        bits = self.bitgen.random_raw((n + 3) // 4).view(np.uint16)[:n]
        keep = bits >= np.uint16(min(65535, round(p * 65536)))
        one = self._ONE_BITS.get(dtype)
        if one is not None:  # the 16-bit float's own bit pattern of 1.0, built in numpy (torch's bool -> bf16 is slow)
            return torch.from_numpy(keep.astype(np.uint16) * np.uint16(one)).view(dtype).view(shape)
        return torch.from_numpy(keep).to(dtype).view(shape)

    def dropout(self, x: torch.Tensor, p: float) -> torch.Tensor:
        if p <= 0:
            return x
        if p >= 1:
            return x * 0
        return ScaledMask.apply(x, self.keep_mask(tuple(x.shape), p, x.dtype).to(x.device), 1.0 / (1.0 - p))


class ScaledMask(torch.autograd.Function):
    """x * mask * scale, computed in float32 and rounded once (addcmul); the same in the backward."""

    @staticmethod
    def forward(ctx, x, mask, scale):
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return torch.addcmul(x.new_zeros(()), x, mask, value=scale)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return torch.addcmul(grad.new_zeros(()), grad, mask, value=ctx.scale), None, None


class StreamDropout(torch.nn.Module):
    """nn.Dropout with its masks from a DropoutStream (same p, same inverted scaling, off in eval mode)."""

    def __init__(self, p: float, stream: DropoutStream):
        super().__init__()
        self.p, self.stream = float(p), stream

    def forward(self, x):
        return self.stream.dropout(x, self.p) if self.training else x

    def extra_repr(self):
        return f"p={self.p}, masks from the run's SFC64 stream"


def _attention_with_stream(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention for a model whose attention goes through transformers' AttentionInterface. While training it is the
    eager attention's math, softmax(q k^T * scaling + mask) v with the softmax in float32, and the probabilities'
    dropout mask (dropout > 0) from the model's DropoutStream; otherwise (evaluation) sdpa as the model would run it.

    Training without attention dropout (the decoders: Llama, Gemma) took sdpa too until fast-path version 3: torch's
    CPU sdpa forward + backward on a step's small shapes (10 texts x 9 heads x 38 tokens) took 10 ms a layer where
    these matmuls take 1.4 (results/benchmarks/decoder_attention.txt)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    stream = getattr(module, "_dilmbench_stream", None)
    segments = getattr(stream, "segments", None)
    # (version 2, pinned by the recipe's fast_version: a layer without attention dropout trained through sdpa)
    training = module.training and stream is not None and not (dropout == 0 and getattr(stream, "sdpa_v2", False))
    if (attention_mask is None and query.shape[2] > 1 and (training or segments is not None)
            and kwargs.get("is_causal", getattr(module, "is_causal", False))):
        # a causal model's mask left to sdpa's is_causal (no padding in the batch): the same pattern, built here
        n_q, n_k = query.shape[2], key.shape[2]
        attention_mask = torch.ones(n_q, n_k, dtype=torch.bool, device=query.device).tril(n_k - n_q)[None, None]
    if segments is not None:  # packed texts (Packer): each token attends only to its own text
        attention_mask = _within_segments(attention_mask, segments)
    if not training:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    n_rep = query.shape[1] // key.shape[1]
    if n_rep > 1:  # grouped-query attention
        key = key.repeat_interleave(n_rep, dim=1)
        value = value.repeat_interleave(n_rep, dim=1)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask[..., : key.shape[-2]]
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if dropout > 0:
        probs = stream.dropout(probs, dropout)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, probs


def _within_segments(attention_mask, segments):
    """The attention mask restricted to pairs of tokens of the same packed text: ``segments`` holds each position's
    text (-1: padding, attending to nothing but itself so that softmax stays finite; its output is never read)."""
    same = segments[..., :, None] == segments[..., None, :]
    if segments.dim() == 1:
        same = same[None]
    same = same[:, None] | torch.eye(same.shape[-1], dtype=torch.bool, device=same.device)
    if attention_mask is None:
        return same
    if attention_mask.dtype == torch.bool:
        return attention_mask & same
    return attention_mask.masked_fill(~same, torch.finfo(attention_mask.dtype).min)


def _register_attention() -> bool:
    try:
        from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
        from transformers.modeling_utils import AttentionInterface
    except ImportError:
        return False
    AttentionInterface.register(ATTENTION_NAME, _attention_with_stream)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    return True


def use_stream_dropout(model, stream: DropoutStream) -> dict:
    """Every nn.Dropout of ``model`` replaced by a StreamDropout drawing from ``stream``; attention dropout too where the
    model's attention goes through transformers' interface (set to this module's function). -> what was done."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.Dropout:
                setattr(parent, name, StreamDropout(child.p, stream))
                swapped += 1
            elif isinstance(child, StreamDropout):
                child.stream = stream
    attention = False
    impl = getattr(model.config, "_attn_implementation", None)
    if impl in ("sdpa", "eager", ATTENTION_NAME) and _interface_attention(model) and _register_attention():
        _set_attention(model, ATTENTION_NAME)
        for m in model.modules():
            m._dilmbench_stream = stream
        attention = True
    # a model whose attention applies its dropout inside torch's sdpa, out of reach (BERT before transformers moved
    # it to the attention interface): that dropout draws from torch's generator, seeded with the run's seed
    elsewhere = not attention and attention_dropout(model) > 0 and any(
        isinstance(getattr(m, "dropout_prob", None), float) and m.dropout_prob > 0 for m in model.modules())
    return {"dropout_modules": swapped, "attention_dropout_from_stream": attention,
            "attention_dropout_from_torch": elsewhere}


def attention_dropout(model) -> float:
    """The attention-probability dropout its config declares (the names the model families use)."""
    cfg = model.config
    for key in ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"):
        value = getattr(cfg, key, None)
        if isinstance(value, (int, float)):
            return float(value)
    return 0.0


def _interface_attention(model) -> bool:
    """Whether the model's attention dispatches through transformers' AttentionInterface (its module imports it)."""
    import sys

    mod = sys.modules.get(type(model).__module__)
    return mod is not None and hasattr(mod, "ALL_ATTENTION_FUNCTIONS")


def _set_attention(model, name: str) -> None:
    if hasattr(model, "set_attn_implementation"):
        try:
            model.set_attn_implementation(name)
            return
        except Exception:  # older releases check names against their own list
            pass
    for m in model.modules():
        cfg = getattr(m, "config", None)
        if cfg is not None:
            cfg._attn_implementation = name


# ---- the input embedding as the rows the set uses ---------------------------------------------------------------------
class CompactEmbedding:
    """Train only the rows of the input embedding that the run's texts use (see the module's docstring).

    The embedding module keeps seeing the vocabulary's ids (a forward pre-hook maps them to the compact table), so model
    code that reads ids (RoBERTa's positions, a decoder's last-token pooling) is unchanged."""

    def __init__(self, model, used_ids):
        emb = model.get_input_embeddings()
        self.active = isinstance(emb, torch.nn.Embedding) and model.get_output_embeddings() is None
        if not self.active:
            return
        self.emb, self.full = emb, emb.weight
        ids = set(int(i) for i in used_ids)
        if emb.padding_idx is not None:
            ids.add(int(emb.padding_idx))
        self.ids = torch.as_tensor(sorted(ids), dtype=torch.long, device=self.full.device)
        remap = torch.zeros(self.full.shape[0], dtype=torch.long, device=self.full.device)
        remap[self.ids] = torch.arange(len(self.ids), device=self.full.device)
        self.remap = remap
        self.padding_idx = emb.padding_idx
        self.num_embeddings = emb.num_embeddings
        emb.weight = torch.nn.Parameter(self.full.detach()[self.ids].clone())
        emb.num_embeddings = len(self.ids)
        if emb.padding_idx is not None:
            emb.padding_idx = int(remap[emb.padding_idx])
        self._hook = emb.register_forward_pre_hook(lambda m, args: (self.remap[args[0]], *args[1:]))

    def restore(self, decay: float) -> None:
        """Put the trained rows back into the full table; the others get the decay AdamW would have applied."""
        if not self.active:
            return
        self._hook.remove()
        with torch.no_grad():
            self.full.mul_(decay)
            self.full[self.ids] = self.emb.weight.detach().to(self.full.dtype)
        self.emb.weight = self.full
        self.emb.num_embeddings = self.num_embeddings
        self.emb.padding_idx = self.padding_idx


# ---- one fused pass over flat buffers ---------------------------------------------------------------------------------
def _adamw_flat(master, grad, exp_avg, exp_avg_sq, out, lr, weight_decay, grad_scale, bias1, bias2_sqrt,
                beta1: float, beta2: float, eps: float):
    """torch's AdamW (decoupled decay, bias-corrected, the fused kernel's order of operations) on one flat float32
    buffer whose gradient is bfloat16, ending with the model's bfloat16 copy written: one pass over memory when
    compiled (the gradient read once, no float32 gradient materialised, the weights cast in the same pass)."""
    g = grad.float() / grad_scale
    p = master * (1 - lr * weight_decay)
    m = exp_avg + (g - exp_avg) * (1 - beta1)
    v = exp_avg_sq * beta2 + g * g * (1 - beta2)
    p = p - (lr / bias1) * m / (v.sqrt() / bias2_sqrt + eps)
    master.copy_(p)
    exp_avg.copy_(m)
    exp_avg_sq.copy_(v)
    out.copy_(p)


def _sum_squares(grad):
    g = grad.float()
    return (g * g).sum()


_COMPILED: dict = {}


def compiled_flat_kernels():
    """(update, sum of squares) compiled by torch.compile (dynamic sizes: one compilation per process, cached on disk
    by inductor), or None where compiling fails (no C++ compiler, an unsupported build): the caller then keeps the
    per-tensor path. Checked once per process on a small buffer against the eager function."""
    if "kernels" not in _COMPILED:
        _COMPILED["kernels"] = None
        try:
            import torch._dynamo  # noqa: F401

            upd = torch.compile(_adamw_flat, dynamic=True, fullgraph=True)
            sq = torch.compile(_sum_squares, dynamic=True, fullgraph=True)
            t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
            bufs = [torch.linspace(-1, 1, 97), torch.linspace(-1, 1, 97).bfloat16(), torch.zeros(97), torch.zeros(97),
                    torch.empty(97, dtype=torch.bfloat16)]
            ref = [b.clone() for b in bufs]
            args = (t(1e-3), t(0.01), t(1.0), t(0.1), t((1 - 0.999) ** 0.5))
            upd(*bufs, *args, 0.9, 0.999, 1e-8)
            _adamw_flat(*ref, *args, 0.9, 0.999, 1e-8)
            ok = all(torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6) for a, b in zip(bufs, ref))
            ok = ok and torch.allclose(sq(bufs[1]), _sum_squares(bufs[1]), rtol=1e-5)
            if ok:
                _COMPILED["kernels"] = (upd, sq)
        except Exception:  # noqa: BLE001 - any failure to compile means: keep the per-tensor path
            _COMPILED["kernels"] = None
    return _COMPILED["kernels"]


# ---- bf16 weights, float32 master weights and optimizer state ------------------------------------------------------
class MasterAdamW:
    """The recipe's AdamW (the transformers scheduler) on float32 master copies of the model's parameters, while the
    model itself computes in ``dtype``: each step the gradients are clipped at their global norm and the masters
    updated and copied back into the model. With ``dtype`` float32 the masters are the parameters themselves and
    nothing is copied.

    Two ways, the same math: ``flat`` (one run, bf16, where torch.compile works): the model's parameters are views
    into one bf16 buffer, the step's gradients are concatenated into another, the masters and both moments are one
    float32 buffer each, so a step is one compiled sum of squares for the norm and one compiled pass per parameter
    group (read the bf16 gradient, update master and moments, write the bf16 weights); otherwise torch's fused AdamW per group over per-parameter
    tensors, the gradients first copied into float32 and the clipping factor passed as its gradient scale."""

    def __init__(self, model, recipe, steps: int, dtype=torch.bfloat16, embedding=None, runs: int = 1,
                 flat: bool = True):
        from transformers import get_scheduler

        from .recipe import optimizer_groups

        decay, no_decay = optimizer_groups(model)
        self.params = decay + no_decay
        self.lowp = dtype != torch.float32
        self.recipe = recipe
        self.max_grad_norm = recipe.max_grad_norm
        # runs > 1: every parameter holds that many runs along its first dimension (dilmbench.batched), each clipped
        # at its own global norm
        self.runs = runs
        # the weight decay a parameter of the decayed group gets per step, for the embedding rows left out
        self.decay_rate = recipe.weight_decay if any(p is embedding for p in decay) else 0.0
        self.lrs: list[float] = []
        self.kernels = compiled_flat_kernels() if (flat and self.lowp and runs == 1 and dtype == torch.bfloat16
                                                   and all(p.device.type == "cpu" for p in self.params)) else None
        self.flat = self.kernels is not None
        if self.flat:
            self._init_flat(model, decay, no_decay, dtype)
            # the scheduler drives a stand-in optimizer's learning rate; the update reads it each step
            host = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=recipe.lr)
            self.opt = host
            self.fused = True
        else:
            if self.lowp:
                self.master = [p.detach().float().clone().requires_grad_(True) for p in self.params]
                self._grad32 = [torch.zeros_like(m) for m in self.master]
                model.to(dtype)
            else:
                self.master = self.params
            masters = dict(zip(map(id, self.params), self.master))
            groups = [{"params": [masters[id(p)] for p in ps], "weight_decay": wd}
                      for ps, wd in ((decay, recipe.weight_decay), (no_decay, 0.0)) if ps]
            try:  # one fused kernel per group
                self.opt = torch.optim.AdamW(groups, lr=recipe.lr, fused=True)
            except (RuntimeError, TypeError, ValueError):
                self.opt = torch.optim.AdamW(groups, lr=recipe.lr)
            self.fused = bool(self.opt.defaults.get("fused"))
        self.sched = get_scheduler(recipe.scheduler, optimizer=self.opt,
                                   num_warmup_steps=int(steps * recipe.warmup_ratio), num_training_steps=steps)

    # ---- the flat way ----
    def _init_flat(self, model, decay, no_decay, dtype) -> None:
        sizes = [p.numel() for p in self.params]
        n = sum(sizes)
        self.master_flat = torch.empty(n, dtype=torch.float32)
        self.p16 = torch.empty(n, dtype=dtype)
        self.g16 = torch.zeros(n, dtype=dtype)
        self.exp_avg = torch.zeros(n, dtype=torch.float32)
        self.exp_avg_sq = torch.zeros(n, dtype=torch.float32)
        self.spans, off = [], 0
        with torch.no_grad():
            for p, k in zip(self.params, sizes):
                self.master_flat[off:off + k].copy_(p.detach().reshape(-1))
                self.spans.append((off, k))
                off += k
        model.to(dtype)  # the model's other floating tensors (buffers) in bf16, as the per-tensor way leaves them
        with torch.no_grad():
            for p, (o, k) in zip(self.params, self.spans):
                self.p16[o:o + k].copy_(self.master_flat[o:o + k])
                p.data = self.p16[o:o + k].view(p.shape)
        n_decay = sum(p.numel() for p in decay)
        self.groups = [(0, n_decay, self.recipe.weight_decay), (n_decay, n - n_decay, 0.0)]
        self.master = [self.master_flat[o:o + k].view(p.shape) for p, (o, k) in zip(self.params, self.spans)]
        self.t = 0

    def _step_flat(self) -> None:
        upd, sq = self.kernels
        # autograd handed each parameter a fresh gradient; one concatenation puts them in the flat buffer (a copy at
        # memory speed: cheaper than letting autograd add into views of it, which is a bf16 add per parameter)
        unreached = [i for i, p in enumerate(self.params) if p.grad is None]
        torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in self.params],
                  out=self.g16)
        saved = [(i, self.master_flat[o:o + k].clone(), self.exp_avg[o:o + k].clone(), self.exp_avg_sq[o:o + k].clone())
                 for i, (o, k) in ((i, self.spans[i]) for i in unreached)]
        scale = torch.ones((), dtype=torch.float32)
        if self.max_grad_norm is not None:
            total = sq(self.g16).sqrt()
            coef = torch.clamp(self.max_grad_norm / (total + 1e-6), max=1.0)
            scale = (1.0 / coef).reshape(()).float()
        lr = self.opt.param_groups[0]["lr"]
        self.lrs.append(lr)
        self.t += 1
        beta1, beta2 = 0.9, 0.999  # the recipe's AdamW (torch's defaults), as the per-tensor way builds it
        f = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
        b1, b2 = f(1 - beta1 ** self.t), f((1 - beta2 ** self.t) ** 0.5)
        for o, k, wd in self.groups:
            if k:
                upd(self.master_flat[o:o + k], self.g16[o:o + k], self.exp_avg[o:o + k], self.exp_avg_sq[o:o + k],
                    self.p16[o:o + k], f(lr), f(wd), scale, b1, b2, beta1, beta2, 1e-8)
        for i, mst, m, v in saved:  # a parameter the loss did not reach is not updated, as in torch's AdamW
            o, k = self.spans[i]
            self.master_flat[o:o + k].copy_(mst)
            self.exp_avg[o:o + k].copy_(m)
            self.exp_avg_sq[o:o + k].copy_(v)
            self.p16[o:o + k].copy_(mst)
        self.opt.step()
        self.sched.step()

    # ---- both ----
    def zero_grad(self) -> None:
        for p in self.params:  # autograd then hands each parameter its fresh gradient, no fill, no add
            p.grad = None

    def step(self) -> None:
        if self.flat:
            self._step_flat()
            return
        # a parameter the loss did not reach has no gradient and, as in torch's AdamW, is not updated (nor decayed)
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if self.lowp:
            for i, (p, m) in enumerate(zip(self.params, self.master)):
                m.grad = self._grad32[i] if p.grad is not None else None
            grads = [self._grad32[i] for i in live]
            torch._foreach_copy_(grads, [self.params[i].grad for i in live])
        else:
            grads = [self.params[i].grad for i in live]
        if self.max_grad_norm is not None and grads and self.runs > 1:
            sq = sum(g.reshape(self.runs, -1).float().pow(2).sum(1) for g in grads)
            coef = torch.clamp(self.max_grad_norm / (sq.sqrt() + 1e-6), max=1.0)
            for g in grads:
                g.mul_(coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))
        elif self.max_grad_norm is not None and grads:
            total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
            coef = torch.clamp(self.max_grad_norm / (total + 1e-6), max=1.0)
            if self.fused:
                self.opt.grad_scale = (1.0 / coef).reshape(())
            else:
                torch._foreach_mul_(grads, coef)
        self.lrs.append(self.opt.param_groups[0]["lr"])
        self.opt.step()
        self.sched.step()
        if self.lowp and live:
            with torch.no_grad():
                torch._foreach_copy_([self.params[i].data for i in live], [self.master[i] for i in live])

    def finish(self, model) -> None:
        """The model back in float32 holding the master weights."""
        if self.flat:
            for p in self.params:
                p.grad = None
            model.to(torch.float32)  # each parameter a float32 copy of its bf16 view
            with torch.no_grad():
                for p, m in zip(self.params, self.master):
                    p.data = m.detach().clone()
            return
        if self.lowp:
            model.to(torch.float32)
            with torch.no_grad():
                torch._foreach_copy_([p.data for p in self.params], self.master)
        for p in self.params:
            p.grad = None

    def embedding_decay(self) -> float:
        """prod_t (1 - lr_t * weight_decay): what AdamW did to a decayed parameter that never had a gradient."""
        return float(np.prod([1.0 - lr * self.decay_rate for lr in self.lrs], dtype=np.float64))


# ---- batches ---------------------------------------------------------------------------------------------------------
class Padder:
    """Pre-tokenized rows padded by hand as tokenizer.pad pads them (side, pad id, segment pad id)."""

    def __init__(self, tokenizer, feats: list[dict], device):
        self.device = device
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.pad = {"input_ids": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
                    "attention_mask": 0, "token_type_ids": getattr(tokenizer, "pad_token_type_id", 0)}
        self.keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in feats[0]]
        self.rows = {k: [np.asarray(f[k], dtype=np.int64) for f in feats] for k in self.keys}
        self.lengths = np.array([len(r) for r in self.rows["input_ids"]])

    def batch(self, idx, width: int | None = None) -> dict:
        width = int(self.lengths[idx].max()) if width is None else width
        out = {}
        for k in self.keys:
            arr = np.full((len(idx), width), self.pad[k], dtype=np.int64)
            for j, i in enumerate(idx):
                row = self.rows[k][i]
                if self.left:
                    arr[j, width - len(row):] = row
                else:
                    arr[j, :len(row)] = row
            out[k] = torch.from_numpy(arr).to(self.device)
        return out


def pack_rows(lengths, idx, row_tokens: int) -> list[np.ndarray]:
    """Texts ``idx`` (lengths[i] tokens each) in rows of at most ``row_tokens`` tokens, longest first, each row filled
    in that order until the next text would not fit (a text longer than a row stands alone)."""
    lengths, idx = np.asarray(lengths), np.asarray(idx)
    order = idx[np.argsort(-lengths[idx], kind="stable")]
    rows, cur, used = [], [], 0
    for i in order:
        if cur and used + lengths[i] > row_tokens:
            rows.append(np.asarray(cur))
            cur, used = [], 0
        cur.append(i)
        used += int(lengths[i])
    if cur:
        rows.append(np.asarray(cur))
    return rows


class Packer:
    """A step's texts packed end to end into rows, for a BERT-family classifier or a Llama / Gemma-3 decoder
    (``Packer.kind_of``): each text keeps its own positions (0..len-1) and segment ids, attention stays within its text
    (the stream's ``segments``, read by the suite's attention function; a decoder's stays causal too), and the head
    reads each text where the model's own would: a BERT's pooler and head its first token, a decoder's score its last
    token that is not the pad token. In float32 it is the padded forward's math (tests/test_fastpath.py).

    Rows hold at most ``row_tokens`` tokens (a longer text alone), longest texts first, and rows go through the model
    together, at most ``batch_tokens`` padded tokens a forward. A padded batch of SST-2 texts is 1.5-2x its real
    tokens; short rows keep attention's per-row square (and its dropout masks) small."""

    def __init__(self, padder: "Padder", row_tokens: int, batch_tokens: int, device, kind: str = "bert"):
        self.padder, self.device, self.kind = padder, device, kind  # kind: Packer.kind_of(model) of the model it feeds
        self.row_tokens, self.batch_tokens = max(1, int(row_tokens)), max(1, int(batch_tokens))

    # decoders whose sequence classifier is base model + a linear ``score`` read at each text's last token, with
    # rotary positions from position_ids (tests/test_fastpath.py packs each)
    DECODERS = ("llama", "gemma3_text")

    @staticmethod
    def kind_of(model) -> str | None:
        """"bert" or "decoder" where this model's texts can be packed, else None."""
        if not _interface_attention(model):
            return None
        mtype = getattr(model.config, "model_type", None)
        bert = getattr(model, "bert", None)
        if (mtype == "bert" and bert is not None and getattr(bert, "pooler", None) is not None
                and hasattr(model, "classifier") and hasattr(model, "dropout")
                and getattr(model.config, "position_embedding_type", "absolute") in ("absolute", None)):
            return "bert"
        if (mtype in Packer.DECODERS and isinstance(getattr(model, "score", None), torch.nn.Linear)
                and hasattr(model, "model")):
            return "decoder"
        return None

    @staticmethod
    def fits(model) -> bool:
        return Packer.kind_of(model) is not None

    def rows(self, idx) -> list[np.ndarray]:
        return pack_rows(self.padder.lengths, idx, self.row_tokens)

    def batches(self, idx) -> list[list[np.ndarray]]:
        """The step's rows grouped into forwards of at most ``batch_tokens`` padded tokens (rows x longest row)."""
        rows = self.rows(idx)
        sizes = [int(self.padder.lengths[r].sum()) for r in rows]
        out, cur, width = [], [], 0
        for r, n in zip(rows, sizes):  # rows come longest first
            if cur and (len(cur) + 1) * max(width, n) > self.batch_tokens:
                out.append(cur)
                cur, width = [], 0
            cur.append(r)
            width = max(width, n)
        if cur:
            out.append(cur)
        return out

    def forward(self, model, stream: "DropoutStream", rows: list) -> torch.Tensor:
        """Logits of the rows' texts, in the order of np.concatenate(rows)."""
        pad = self.padder
        lens = [[len(pad.rows["input_ids"][i]) for i in row] for row in rows]
        width = max(sum(n) for n in lens)
        shape = (len(rows), width)
        ids = np.full(shape, pad.pad["input_ids"], dtype=np.int64)
        types = np.zeros(shape, dtype=np.int64)
        positions = np.zeros(shape, dtype=np.int64)
        segments = np.full(shape, -1, dtype=np.int64)
        decoder = self.kind == "decoder"
        read_row, read_col = [], []  # where the head reads each text: its first token (BERT), its last (a decoder)
        for r, (row, ns) in enumerate(zip(rows, lens)):
            at = 0
            for j, (i, n) in enumerate(zip(row, ns)):
                ids[r, at:at + n] = pad.rows["input_ids"][i]
                if "token_type_ids" in pad.rows:
                    types[r, at:at + n] = pad.rows["token_type_ids"][i]
                positions[r, at:at + n] = np.arange(n)
                segments[r, at:at + n] = j
                read_row.append(r)
                if decoder:  # its last token that is not the pad token, as the model's own pooling picks it
                    real = np.flatnonzero(pad.rows["input_ids"][i] != model.config.pad_token_id)
                    read_col.append(at + (int(real[-1]) if len(real) else 0))
                else:
                    read_col.append(at)
                at += n
        t = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        kwargs = {"input_ids": t(ids), "position_ids": t(positions)}
        if "token_type_ids" in pad.rows:
            kwargs["token_type_ids"] = t(types)
        stream.segments = t(segments)
        try:
            hidden = (model.model if decoder else model.bert)(**kwargs).last_hidden_state
        finally:
            stream.segments = None
        read = hidden[t(np.asarray(read_row)), t(np.asarray(read_col))]
        if decoder:  # the sequence classifier's linear score at each text's last token
            return model.score(read)
        return model.classifier(model.dropout(model.bert.pooler(read[:, None])))  # each text's [CLS]


class PackedSteps:
    """finetune.train_step's contract (one optimisation step on a batch of pre-tokenized rows: loss the mean of the
    rows' cross-entropies, the recipe's clipping, the caller's optimizer and scheduler) on packed rows, for a model
    trained step by step by someone else's loop (DiLM's matching trajectory): its dropout, attention dropout included,
    from a DropoutStream seeded with ``seed`` (use_stream_dropout), its texts packed (:class:`Packer`), under the
    recipe's autocast, weights and optimizer as the caller has them. DiLM's 20 trajectory steps of 64 SST-2 rows on
    MiniLM: 1.61x faster than train_step's padded micro-batches (results/benchmarks/dilm_step.txt). ``active`` is
    False where the model cannot be packed (the caller keeps train_step); evaluation passes between steps run as
    before."""

    def __init__(self, model, tokenizer, recipe, seed: int, device):
        self.tokenizer, self.recipe, self.device = tokenizer, recipe, device
        self.kind = Packer.kind_of(model)
        self.active = self.kind is not None
        if self.active:
            self.stream = DropoutStream(seed)
            self.active = use_stream_dropout(model, self.stream)["attention_dropout_from_stream"]

    def step(self, model, feats: list[dict], labels, opt, sched) -> float:
        from .recipe import autocast_for

        padder = Padder(self.tokenizer, feats, self.device)
        packer = Packer(padder, PACK_ROW_TOKENS, pack_batch_tokens(self.recipe, self.device), self.device, self.kind)
        labels = torch.as_tensor(labels).to(self.device)
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for chunk in packer.batches(np.arange(len(feats))):
            rows = torch.as_tensor(np.concatenate(chunk), device=self.device)
            with autocast_for(self.device, self.recipe.cpu_bf16):
                logits = packer.forward(model, self.stream, chunk)
            loss = F.cross_entropy(logits.float(), labels[rows], reduction="none").sum() / len(feats)
            loss.backward()
            total += float(loss.detach())
        if self.recipe.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.recipe.max_grad_norm)
        opt.step()
        sched.step()
        return total


def pack_batch_tokens(recipe, device) -> int:
    """Padded tokens a packed forward: the recipe's own cap when it sets one, else PACK_BATCH_TOKENS."""
    return PACK_BATCH_TOKENS if recipe.micro_batch_tokens == "auto" else recipe.micro_tokens(device)


# ---- the loop --------------------------------------------------------------------------------------------------------
def train_classifier_fast(model, tokenizer, texts, labels, recipe, seed: int, device: str, weights=None,
                          progress: bool = False, loss_fn=None, dtype=torch.bfloat16, pack: bool = True) -> list[float]:
    """train_classifier's contract on the fast path: fine-tunes ``model`` in place, returns the per-step losses.
    ``pack``: a BERT-family learner trains on packed rows (:class:`Packer`); others, or False, on padded micro-batches."""
    from .batching import tokenize
    from .recipe import endless_batches, micro_batches
    from .progress import progress as progress_bar

    feats = tokenize(tokenizer, texts, recipe.max_length)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long).to(device)
    weights_t = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float32)).to(device)
    padder = Padder(tokenizer, feats, device)
    used = np.unique(np.concatenate(padder.rows["input_ids"] + [np.asarray([padder.pad["input_ids"]])]))
    compact = CompactEmbedding(model, used)
    torch.manual_seed(seed)  # only what the stream cannot reach draws from torch's generator (see use_stream_dropout)
    stream = DropoutStream(seed)
    swapped = use_stream_dropout(model, stream)
    stream.sdpa_v2 = recipe.fast_version == 2  # as version 2 ran a model without attention dropout
    kind = Packer.kind_of(model)
    # packed rows where the recipe micro-batches (a CPU's default); one padded batch per step (micro_batch_tokens 0:
    # CUDA's default, and what the batched path trains each run with) stays one padded batch; version 2 packed no
    # decoder
    packer = (Packer(padder, PACK_ROW_TOKENS, pack_batch_tokens(recipe, device), device, kind)
              if pack and recipe.micro_tokens(device) > 0 and swapped["attention_dropout_from_stream"]
              and kind is not None and not (kind == "decoder" and recipe.fast_version == 2) else None)
    opt = MasterAdamW(model, recipe, recipe.steps, dtype, embedding=compact.emb.weight if compact.active else None)
    model.train()
    n = len(feats)
    batches = endless_batches(n, recipe.batch_size(n), seed)
    micro = recipe.micro_tokens(device)
    lf = loss_fn or (lambda logits, y: F.cross_entropy(logits, y, reduction="none"))
    losses = []
    for _ in progress_bar(range(recipe.steps), desc="fine-tune steps", enabled=progress, leave=False):
        idx = next(batches)
        opt.zero_grad()
        total = None
        chunks = packer.batches(idx) if packer else [idx[c] for c in micro_batches(padder.lengths[idx], micro)]
        for chunk in chunks:
            rows = np.concatenate(chunk) if packer else chunk
            logits = packer.forward(model, stream, chunk) if packer else model(**padder.batch(rows)).logits
            part = lf(logits.float(), labels_t[rows])
            if weights_t is not None:
                part = part * weights_t[rows]
            part = part.sum() / len(idx)
            total = part if total is None else total + part
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    opt.finish(model)
    compact.restore(opt.embedding_decay())
    return losses
