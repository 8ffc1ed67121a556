"""The reference path of the fine-tuning recipe (dilmbench.recipe defines it): the loop the `finetune` evaluator, DiLM's
inner loop and the synthesis methods' small models train with, one run at a time, in float32 (or under bf16 autocast).
With the recipe's ``fast`` option it hands over to the fast path (dilmbench.fastpath).
"""
from __future__ import annotations

import numpy as np

from .batching import collate, length_sorted_batches, tokenize
# the recipe's definition and its batch order, re-exported: dilmbench.finetune is where methods and evaluators get them
from .recipe import (FinetuneRecipe, autocast_for, endless_batches, micro_batches,  # noqa: F401
                     optimizer_groups)


def make_optimizer(model, recipe: FinetuneRecipe, steps: int | None = None):
    """AdamW with no decay on biases and normalisation weights, and the recipe's warmup schedule."""
    import torch
    from transformers import get_scheduler

    steps = recipe.steps if steps is None else steps
    decay, no_decay = optimizer_groups(model)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is the same AdamW update, ~4x faster on CPU (one pass over the parameters)
        opt = torch.optim.AdamW(groups, lr=recipe.lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        opt = torch.optim.AdamW(groups, lr=recipe.lr)
    sched = get_scheduler(recipe.scheduler, optimizer=opt, num_warmup_steps=int(steps * recipe.warmup_ratio),
                          num_training_steps=steps)
    return opt, sched


def head_modules(model):
    """The modules outside the pretrained body (``model.base_model``): the classification head."""
    body = {id(m) for m in model.base_model.modules()}
    return [m for m in model.modules() if id(m) not in body and m is not model]


def reinit_head(model, seed: int) -> None:
    """Fresh head: every Linear outside the body gets N(0, initializer_range) weights and zero bias, seeded.

    Done explicitly, so the head is fresh even when the checkpoint carries one (a fine-tuned model)."""
    import torch

    std = getattr(model.config, "initializer_range", 0.02)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in head_modules(model):
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
                if m.bias is not None:
                    m.bias.zero_()


def dropout_overrides(model_id: str, dropout: float) -> dict:
    """Every dropout probability of a model's config (hidden, attention, classifier, ...) set to ``dropout``: the
    config keyword arguments for from_pretrained."""
    from transformers import AutoConfig

    from .models import resolve_model

    cfg = AutoConfig.from_pretrained(resolve_model(model_id))
    return {k: dropout for k, v in cfg.to_dict().items()
            if "dropout" in k and (v is None or isinstance(v, float)) and not k.startswith("summary")}


def learner_tokenizer(model_id: str):
    """A learner's tokenizer; one without a pad token (a causal LM's) pads with its end-of-text token, as its model's
    config does (load_classifier), so batches can be padded and the last real token found."""
    from .models import load_tokenizer

    tok = load_tokenizer(model_id)
    if tok.pad_token is None and tok.eos_token is not None:
        tok.pad_token = tok.eos_token
    return tok


def load_classifier(model_id: str, num_labels: int, seed: int, device: str, dropout: float | None = None):
    """The pretrained body with a freshly initialised head, seeded; ``dropout``: every dropout probability of the
    model set to it (a reward model trained under heavy regularisation), else the model's own."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from .models import load_pretrained

    torch.manual_seed(seed)
    extra = dropout_overrides(model_id, dropout) if dropout is not None else {}
    model = load_pretrained(AutoModelForSequenceClassification, model_id, num_labels=num_labels,
                            ignore_mismatched_sizes=True, **extra)  # a checkpoint's own head is replaced below anyway
    if any(p.dtype != torch.float32 for p in model.parameters()):  # a checkpoint saved in 16 bits (gemma-3) loads so
        model = model.float()  # the recipe's weights, gradients and optimizer state are float32 on every path
    reinit_head(model, seed)
    if model.config.pad_token_id is None and getattr(model.config, "eos_token_id", None) is not None:
        model.config.pad_token_id = model.config.eos_token_id
    return model.to(device)


def symmetric_cross_entropy(alpha: float = 0.1, beta: float = 1.0, log_zero: float = -4.0):
    """Symmetric cross-entropy (Wang et al., ICCV 2019), robust to noisy labels: alpha * CE + beta * reverse CE, the
    reverse CE being -sum_k p_k log q_k with the one-hot label as q and log 0 clipped to ``log_zero``, which is
    -log_zero * (1 - p_y). -> a per-example loss function for train_classifier."""
    import torch.nn.functional as F

    def loss(logits, labels):
        ce = F.cross_entropy(logits, labels, reduction="none")
        p_y = logits.softmax(-1).gather(1, labels[:, None])[:, 0]
        return alpha * ce + beta * (-log_zero) * (1 - p_y)

    return loss


def train_step(model, tokenizer, feats: list[dict], labels, opt, sched, recipe: FinetuneRecipe, device: str,
               weights=None, loss_fn=None) -> float:
    """One optimisation step on one batch: loss = mean_i w_i * CE_i (w = 1 when unweighted).

    The batch's forward/backward may run as length-sorted micro-batches (recipe.micro_batch_tokens); each adds its
    share sum_i w_i CE_i / B to the gradient, so the step is the same as one padded batch, with less padding."""
    import torch

    n = len(feats)
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for chunk in micro_batches([len(f["input_ids"]) for f in feats], recipe.micro_tokens(device)):
        batch = collate(tokenizer, [feats[i] for i in chunk], device)
        with autocast_for(device, recipe.cpu_bf16):
            logits = model(**batch).logits
        losses = (loss_fn or _cross_entropy)(logits.float(), labels[chunk].to(device))
        if weights is not None:
            losses = losses * weights[chunk].to(device)
        loss = losses.sum() / n
        loss.backward()
        total += float(loss.detach())
    if recipe.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
    opt.step()
    sched.step()
    return total


def _cross_entropy(logits, labels):
    import torch.nn.functional as F

    return F.cross_entropy(logits, labels, reduction="none")


def train_classifier(model, tokenizer, texts: list[tuple[str, ...]], labels, recipe: FinetuneRecipe, seed: int,
                     device: str, weights=None, progress: bool = False, loss_fn=None) -> list[float]:
    """Fine-tune ``model`` on a text set with the recipe; returns the per-step losses. ``loss_fn(logits, labels)``
    -> per-example losses (default cross-entropy; e.g. symmetric_cross_entropy())."""
    import torch

    if recipe.fast:
        from .fastpath import train_classifier_fast

        return train_classifier_fast(model, tokenizer, texts, labels, recipe, seed, device, weights, progress, loss_fn)

    from .progress import progress as progress_bar

    feats = tokenize(tokenizer, texts, recipe.max_length)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    weights_t = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float32))
    torch.manual_seed(seed)  # dropout
    opt, sched = make_optimizer(model, recipe)
    model.train()
    batches = endless_batches(len(feats), recipe.batch_size(len(feats)), seed)
    losses = []
    for _ in progress_bar(range(recipe.steps), desc="fine-tune steps", enabled=progress, leave=False):
        idx = next(batches)
        w = None if weights_t is None else weights_t[idx]
        losses.append(train_step(model, tokenizer, [feats[i] for i in idx], labels_t[idx], opt, sched, recipe, device, w,
                                 loss_fn))
    return losses


def fit_small_model(learner: str, num_labels: int, texts, labels, recipe: FinetuneRecipe, seed: int, device: str,
                    loss_fn=None, dropout: float | None = None):
    """The suite's fine-tuning recipe as a tool for methods (S3, GOLD train a small model on what they wrote,
    CondenseLM its reward models): a fresh head on ``learner``, trained on (texts, labels) -> (model, tokenizer);
    ``dropout`` sets every dropout probability of the model (load_classifier)."""
    tok = learner_tokenizer(learner)
    model = load_classifier(learner, num_labels, seed, device, dropout=dropout)
    train_classifier(model, tok, texts, labels, recipe, seed, device, loss_fn=loss_fn)
    return model, tok


def logits_of(model, tokenizer, texts, recipe: FinetuneRecipe, device: str) -> np.ndarray:
    return predict_logits(model, tokenize(tokenizer, texts, recipe.max_length), tokenizer, recipe.eval_batch_size,
                          device, cpu_bf16=recipe.bf16)


def predict_logits(model, features: list[dict], tokenizer, batch_size: int, device: str,
                   cpu_bf16: bool = False) -> np.ndarray:
    """Evaluation pass: length-sorted batches, dynamic padding, inference mode."""
    import torch

    model.eval()
    out = None
    with torch.inference_mode():
        for idx, fb in length_sorted_batches(features, batch_size):
            with autocast_for(device, cpu_bf16):
                logits = model(**collate(tokenizer, fb, device)).logits.float().cpu().numpy()
            if out is None:
                out = np.zeros((len(features), logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    return out
