"""Gradient matching's math: the learner head's gradient (efficient and the reference's way) and the matching loss.

Only the learner head's gradient is matched (the reference's ``classifier_grad_only``), and it depends on the body only
through the head's input, so the body runs under no_grad and the head's gradient is taken on those features with
create_graph (:func:`head_gradient`; tested equal to full autograd through the learner).
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dilmbench.cluster import k_centers, kmeans_labels
from dilmbench.seeds import derive_seed

from .stages import max_new_tokens, stage_autocast, stage_seconds


def head_parameters(learner) -> list:
    from dilmbench.finetune import head_modules

    seen, params = set(), []
    for m in head_modules(learner):
        for p in m.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params


@contextmanager
def frozen_body_outputs(learner, outputs):
    """Make ``learner.base_model`` return ``outputs`` (computed earlier) so that the model's own head code runs
    on them: any architecture's head (BERT, RoBERTa, XLNet) without re-implementing it."""
    body = learner.base_model
    body.forward = lambda *a, **k: outputs
    try:
        yield
    finally:
        del body.forward


def body_outputs(learner, batch: dict):
    import torch

    with torch.no_grad():
        return learner.base_model(**batch)


def head_logits(learner, batch: dict, outputs):
    with frozen_body_outputs(learner, outputs):
        return learner(**batch).logits


def head_gradient(learner, batch: dict, labels, weights=None, create_graph: bool = False, outputs=None):
    """d/d(head) of sum_i w_i CE_i (w = 1/B when None) with the body's features computed under no_grad.

    With create_graph the result stays differentiable with respect to ``weights`` (and so to the generator)."""
    import torch
    import torch.nn.functional as F

    if outputs is None:
        outputs = body_outputs(learner, batch)
    logits = head_logits(learner, batch, outputs).float()
    ce = F.cross_entropy(logits, labels, reduction="none")
    loss = ce.mean() if weights is None else (ce * weights).sum()
    grads = torch.autograd.grad(loss, head_parameters(learner), create_graph=create_graph)
    return torch.cat([g.reshape(-1) for g in grads])


def head_gradient_full_autograd(learner, batch: dict, labels, weights=None, create_graph: bool = False):
    """The reference's way: gradient of the whole learner, then keep the head's."""
    import torch
    import torch.nn.functional as F

    logits = learner(**batch).logits.float()
    ce = F.cross_entropy(logits, labels, reduction="none")
    loss = ce.mean() if weights is None else (ce * weights).sum()
    params = [p for p in learner.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    head = {id(p) for p in head_parameters(learner)}
    return torch.cat([g.reshape(-1) for p, g in zip(params, grads) if id(p) in head])


def matching_loss(g_real, g_syn):
    import torch.nn.functional as F

    return 1 - F.cosine_similarity(g_real, g_syn, dim=0)


class GradientMatching:
    """Stage 2 of DiLM for one task: ``outer_loops`` x ``inner_loops`` generator updates.

    Each outer loop restarts the learner from its pretrained body with a fresh head; each inner loop makes one
    generator update (:meth:`update`) and then moves the learner ``learner_steps`` along a real fine-tuning trajectory
    (:meth:`advance_learner`). Every ``gen_interval`` outer loops the generator writes a new pool of diverse synthetic
    batches (:meth:`diverse_batches`); the real side comes from ``n_repsets`` k-centre teacher sets
    (:meth:`teacher_sets`)."""

    def __init__(self, method, ctx, cfg: dict):
        from dilmbench.finetune import FinetuneRecipe, learner_tokenizer

        self.method, self.ctx, self.cfg = method, ctx, cfg
        self.C = ctx.task.num_labels
        self.total = cfg["outer_loops"] * cfg["inner_loops"]
        self.recipe = FinetuneRecipe(steps=self.total, lr=cfg["gm_lr"], weight_decay=cfg["gm_weight_decay"],
                                     warmup_ratio=cfg["gm_warmup_ratio"], max_grad_norm=1.0)
        self.learner_recipe = FinetuneRecipe(max_batch_size=cfg["learner_batch_size"],
                                             steps=cfg["inner_loops"] * cfg["learner_steps"],
                                             cpu_bf16=bool(cfg.get("cpu_bf16")))
        self.learner_tok = learner_tokenizer(cfg["learner"])
        self.pool_texts, self.pool_labels = ctx.data.texts("pool"), ctx.data.labels("pool")
        self._feats: dict[int, dict] = {}  # tokenized real examples, cached across steps

    # --- the real side -------------------------------------------------------------------------------------
    def feats_of(self, rows) -> list[dict]:
        from dilmbench.batching import tokenize

        missing = [int(r) for r in rows if int(r) not in self._feats]
        if missing:
            texts = [self.pool_texts[r] for r in missing]
            for r, f in zip(missing, tokenize(self.learner_tok, texts, self.cfg["learner_max_length"])):
                self._feats[r] = f
        return [self._feats[int(r)] for r in rows]

    def teacher_sets(self) -> list[dict[int, np.ndarray]]:
        """Representative teachers: n_repsets k-centre sets of repset_dpc per class, pool rows."""
        cfg, ctx = self.cfg, self.ctx
        emb, labels = ctx.pool_embeddings(), self.pool_labels
        sets = []
        for s in range(cfg["n_repsets"]):
            per = {}
            for c in range(self.C):
                rows = np.flatnonzero(labels == c)
                per[c] = rows[k_centers(emb[rows], min(cfg["repset_dpc"], len(rows)), seed=s,
                                        backend=cfg["select_backend"])]
            sets.append(per)
        return sets

    def real_gradient(self, learner, rows: np.ndarray, c: int, rng):
        """The head's gradient on real_batch teacher rows of class c (averaged over real_accum draws), detached."""
        import torch

        from dilmbench.batching import collate

        cfg, g = self.cfg, 0
        for _ in range(cfg["real_accum"]):
            pick = rows[rng.choice(len(rows), min(cfg["real_batch"], len(rows)), replace=False)]
            batch = collate(self.learner_tok, self.feats_of(pick), self.ctx.device)
            g = g + head_gradient(learner, batch, torch.full((len(pick),), c, device=self.ctx.device))
        return (g / cfg["real_accum"]).detach()

    # --- the synthetic side --------------------------------------------------------------------------------
    def diverse_batches(self, gen, outer: int) -> dict[int, list]:
        """Generate a pool per class, cluster it into n_clusters on a fresh learner's [CLS] features, and build
        batches that take one member of every cluster. Returns {class: [(gen seqs, learner features), ...]}."""
        import torch

        from dilmbench.batching import collate, tokenize
        from dilmbench.embed import pool_hidden
        from dilmbench.finetune import load_classifier


        cfg, ctx = self.cfg, self.ctx
        base = derive_seed(cfg["seed"], "pool", outer)
        probe = load_classifier(cfg["learner"], self.C, derive_seed(base, "probe"), ctx.device)
        rng = np.random.default_rng(base)
        out = {}
        for c in range(self.C):
            texts, seqs = gen.sample(c, cfg["pool_batches"] * cfg["syn_batch"], len(ctx.task.text_fields),
                                     derive_seed(base, "sample", c), cfg["top_p"], cfg["top_k"],
                                     max_new_tokens(cfg, ctx.task), cfg["gen_batch_size"], ctx.device)
            feats = tokenize(self.learner_tok, texts, cfg["learner_max_length"])  # tokenized once per pool
            cls = []
            with torch.no_grad():
                for i in range(0, len(feats), 128):
                    batch = collate(self.learner_tok, feats[i:i + 128], ctx.device)
                    hidden = probe.base_model(**batch).last_hidden_state
                    cls.append(pool_hidden(hidden, batch["attention_mask"], "cls", batch["input_ids"],
                                           self.learner_tok.cls_token_id).float().cpu().numpy())
            cls = np.concatenate(cls)
            k = min(cfg["n_clusters"], len(texts))
            assign, _ = kmeans_labels(cls, k, seed=int(rng.integers(2**31 - 1)),
                                      backend="faiss" if len(texts) > 5000 else "sklearn")
            members = [m for m in (np.flatnonzero(assign == j) for j in range(k)) if len(m)]
            batches = []
            for _ in range(cfg["pool_batches"]):
                pick = [int(rng.choice(m)) for m in members]
                while len(pick) < cfg["syn_batch"]:
                    pick.append(int(rng.integers(len(texts))))
                batches.append(([seqs[i] for i in pick], [feats[i] for i in pick]))
            out[c] = batches
        return out

    # --- one generator update and the learner's trajectory -------------------------------------------------
    def update(self, gen, learner, teacher, batches, outer: int, inner: int, opt, sched) -> float:
        """One generator step: per class, the matching loss between the head's gradient on real teacher rows and
        on the generator-weighted synthetic batch, backpropagated class by class (as the reference, to bound
        memory). Returns the mean gradient cosine similarity."""
        import torch

        from dilmbench.batching import collate


        cfg, ctx = self.cfg, self.ctx
        learner.eval()  # matching passes: deterministic features (no dropout)
        opt.zero_grad(set_to_none=True)
        sims = []
        for c in range(self.C):
            g_real = self.real_gradient(learner, teacher[c], c, np.random.default_rng([cfg["seed"], outer, inner, c]))
            seqs, sfeats = batches[c][(outer * cfg["inner_loops"] + inner) % len(batches[c])]
            eager = gen.training_attention()
            try:
                with stage_autocast(ctx.device, cfg):
                    gen_loss = gen.losses(seqs, ctx.device)
            finally:
                eager.restore()
            w = torch.softmax(-gen_loss.float() / cfg["tau"], dim=0)
            labels = torch.full((len(seqs),), c, device=ctx.device)
            g_syn = head_gradient(learner, collate(self.learner_tok, sfeats, ctx.device), labels, weights=w,
                                  create_graph=True)
            loss_c = matching_loss(g_real, g_syn) / self.C
            loss_c.backward()
            sims.append(1 - float(loss_c.detach()) * self.C)
        torch.nn.utils.clip_grad_norm_(gen.model.parameters(), 1.0)
        opt.step()
        sched.step()
        return float(np.mean(sims))

    def advance_learner(self, learner, real_batches, l_opt, l_sched, packed=None) -> None:
        """``learner_steps`` steps along the real fine-tuning trajectory: finetune.train_step, or ``packed`` (a
        fastpath.PackedSteps, with ``learner_pack``)."""
        import torch

        from dilmbench.finetune import train_step

        learner.train()
        for _ in range(self.cfg["learner_steps"]):
            idx = next(real_batches)
            if packed is not None:
                packed.step(learner, self.feats_of(idx), self.pool_labels[idx], l_opt, l_sched)
            else:
                train_step(learner, self.learner_tok, self.feats_of(idx), torch.as_tensor(self.pool_labels[idx]),
                           l_opt, l_sched, self.learner_recipe, self.ctx.device)

    def packed_steps(self, learner, outer: int):
        """With ``learner_pack``, the trajectory's steps on packed rows with dropout from the run's own stream (seeded
        per outer loop), where the learner can be packed; else None (finetune.train_step)."""
        if not self.cfg.get("learner_pack"):
            return None
        from dilmbench.fastpath import PackedSteps

        packed = PackedSteps(learner, self.learner_tok, self.learner_recipe,
                             derive_seed(self.cfg["seed"], "dropout", outer), self.ctx.device)
        return packed if packed.active else None

    # --- the loop ------------------------------------------------------------------------------------------
    def run(self, gen, out: Path):
        from dilmbench.progress import progress

        from dilmbench import checkpoint
        from dilmbench.finetune import endless_batches, load_classifier, make_optimizer


        cfg, ctx = self.cfg, self.ctx
        gen, opt, sched, start, resume = self.method.open_stage(out, ctx, lambda: gen, self.recipe, cfg["seed"] + 1)
        if opt is None:
            return gen
        start_outer = start // cfg["inner_loops"]
        teachers = self.teacher_sets()
        real_batches = endless_batches(len(self.pool_texts), cfg["learner_batch_size"], cfg["seed"] + 1)
        for _ in range(start_outer * (cfg["inner_loops"] - 1) * cfg["learner_steps"]):
            next(real_batches)  # a resumed run continues the same stream of real batches
        bar = progress(range(start_outer, cfg["outer_loops"]), desc="dilm stage 2 (gradient matching)",
                       enabled=ctx.progress, initial=start_outer, total=cfg["outer_loops"])
        # a resumed run continues with the diverse-batch pool it had (regenerating it would change the matching)
        batches, log = resume.get("batches"), list(resume.get("grad_sim", []))
        for outer in bar:
            if batches is None or outer % cfg["gen_interval"] == 0:
                batches = self.diverse_batches(gen, outer)
            learner = load_classifier(cfg["learner"], self.C, derive_seed(cfg["seed"], "learner", outer), ctx.device)
            l_opt, l_sched = make_optimizer(learner, self.learner_recipe)
            packed = self.packed_steps(learner, outer)
            gen.model.train()
            for inner in range(cfg["inner_loops"]):
                teacher = teachers[(outer * cfg["inner_loops"] + inner) % len(teachers)]
                log.append(self.update(gen, learner, teacher, batches, outer, inner, opt, sched))
                if inner + 1 < cfg["inner_loops"]:
                    self.advance_learner(learner, real_batches, l_opt, l_sched, packed)
            bar.set_postfix(grad_sim=f"{np.mean(log[-cfg['inner_loops']:]):.3f}")
            if (outer + 1) % max(1, cfg["ckpt_every"] // cfg["inner_loops"]) == 0 and outer + 1 < cfg["outer_loops"]:
                checkpoint.save_state(out / "last", gen.model, gen.tok, opt, sched, (outer + 1) * cfg["inner_loops"],
                                      {"grad_sim": log[-50:], "seconds": stage_seconds(resume)},
                                      resume={"batches": batches, "grad_sim": log})
        checkpoint.save_state(out / "final", gen.model, gen.tok, None, None, self.total,
                              {"grad_sim": log[-50:], "seconds": stage_seconds(resume)})
        return gen
