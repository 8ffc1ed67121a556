"""DiLM (Maekawa et al., NAACL 2024 Findings): a generator LM trained by gradient matching writes the text sets.

Stage 1 trains a causal LM to write examples of a given class (one start token per class, a separator between the
two texts of a pair, end-of-text at the end). Stage 2 fine-tunes it by gradient matching: the generator's
per-example losses weight the learner's loss on generated examples, w = softmax(-loss_gen / tau), so the
cosine distance between the learner head's gradient on real and on generated data reaches the generator.
Stage 3 samples DPC x sample_factor texts per class and keeps DPC with k-centers on encoder embeddings.

Speed, same math as the reference: only the learner head's gradient is matched, and it depends on the body only
through the head's input, so the body runs under no_grad and the head's gradient is taken on those features
with create_graph (see :func:`head_gradient`; tested equal to full autograd through the learner).

Both stages checkpoint under the cache (keyed by the config hash) and resume from their last checkpoint; one trained
generator serves every DPC and set index.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dilmbench.api import Method, MethodContext
from dilmbench.cache import stable_hash
from dilmbench.cluster import k_centers, kmeans_labels
from dilmbench.errors import DilmbenchError
from dilmbench.textset import TextSet

PAPER = {
    "generator": "gpt2",
    "learner": "bert-base-uncased",
    # stage 1: LM training on the task's train split (the pool)
    "lm_steps": 80_000, "lm_batch_size": 64, "lm_lr": 1e-5, "lm_weight_decay": 0.01, "lm_warmup_ratio": 0.1,
    "max_length": 128,
    # stage 1's batch as length-sorted micro-batches of at most this many tokens (same gradient; "auto": 0 on CUDA,
    # 512 on CPU)
    "lm_micro_batch_tokens": "auto",
    # stage 2: gradient matching
    "gm": True, "outer_loops": 2_000, "inner_loops": 10, "learner_steps": 20, "learner_batch_size": 64,
    "real_batch": 200, "real_accum": 1, "repset_dpc": 200, "n_repsets": 10,
    "syn_batch": 64, "tau": 1.0, "gm_lr": 3e-7, "gm_weight_decay": 0.01, "gm_warmup_ratio": 0.05,
    "gen_interval": 20, "pool_batches": 200, "n_clusters": 64,
    # stage 3: final sets
    "sample_factor": 100, "top_p": 0.95, "top_k": 0, "gen_batch_size": 64, "max_new_tokens": 64,
    "select_backend": "sklearn",
    "ckpt_every": 500, "seed": 0, "bf16": True,
}
# Keys read only by stage 2 (gradient matching): they do not touch dilm_vanilla's generator or sets.
STAGE2_KEYS = {"learner", "outer_loops", "inner_loops", "learner_steps", "learner_batch_size", "real_batch",
               "real_accum", "repset_dpc", "n_repsets", "syn_batch", "tau", "gm_lr", "gm_weight_decay",
               "gm_warmup_ratio", "gen_interval", "pool_batches", "n_clusters"}
# The paper's QQP / MNLI real batches: 100 per class, 2 accumulated.
PAIR_TASK_OVERRIDES = {"real_batch": 100, "real_accum": 2}


# ------------------------------------------------------------------------------------------------------------
# generator: class start tokens, pair separator, per-example loss, sampling
# ------------------------------------------------------------------------------------------------------------
class Generator:
    SEP = "<sep>"

    @staticmethod
    def class_tokens(num_labels: int) -> list[str]:
        return [f"<class_{c}>" for c in range(num_labels)]

    def __init__(self, model, tokenizer, num_labels: int):
        self.model, self.tok, self.num_labels = model, tokenizer, num_labels
        self.eos_id = tokenizer.eos_token_id
        self.class_ids = tokenizer.convert_tokens_to_ids(self.class_tokens(num_labels))
        self.sep_id = tokenizer.convert_tokens_to_ids(self.SEP)
        self.pad_id = tokenizer.pad_token_id

    @classmethod
    def from_pretrained(cls, model_id: str, num_labels: int, add_tokens: bool = True):
        """Load a causal LM; on first load add one start token per class (initialised from the end-of-text
        embedding), the pair separator and a pad token."""
        import torch
        from transformers import AutoModelForCausalLM

        from dilmbench.models import load_pretrained, load_tokenizer

        tok = load_tokenizer(model_id)
        model = load_pretrained(AutoModelForCausalLM, model_id, dtype=torch.float32)
        if tok.eos_token_id is None:
            raise DilmbenchError(f"generator '{model_id}' has no end-of-text token")
        new = cls.class_tokens(num_labels) + [cls.SEP]
        if add_tokens and any(t not in tok.get_vocab() for t in new):
            tok.add_special_tokens({"additional_special_tokens": new})
            if tok.pad_token_id is None or tok.pad_token_id == tok.eos_token_id:
                tok.add_special_tokens({"pad_token": "<pad>"})
            old = model.get_input_embeddings().weight.shape[0]
            model.resize_token_embeddings(len(tok), mean_resizing=False)
            emb = model.get_input_embeddings().weight
            with torch.no_grad():
                for i in range(old, emb.shape[0]):
                    emb[i].copy_(emb[tok.eos_token_id])
                out = model.get_output_embeddings()
                if out is not None and out.weight.data_ptr() != emb.data_ptr():
                    for i in range(old, out.weight.shape[0]):
                        out.weight[i].copy_(out.weight[tok.eos_token_id])
        model.config.pad_token_id = tok.pad_token_id
        return cls(model, tok, num_labels)

    def encode_example(self, texts: tuple[str, ...], label: int, max_length: int) -> list[int]:
        """[class_c] text1 (<sep> text2) <eos>, truncated to max_length (the eos kept)."""
        ids = [self.class_ids[label]]
        for j, t in enumerate(texts):
            if j:
                ids.append(self.sep_id)
            ids.extend(self.tok(t, add_special_tokens=False)["input_ids"])
        ids = ids[: max_length - 1] + [self.eos_id]
        return ids

    def decode(self, ids: list[int], n_fields: int) -> tuple[str, ...] | None:
        """Generated ids (after the class token) -> texts; None if a pair lacks its separator."""
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        parts, cur = [], []
        for t in ids:
            if t == self.sep_id:
                parts.append(cur)
                cur = []
            else:
                cur.append(t)
        parts.append(cur)
        if len(parts) < n_fields:
            return None
        texts = tuple(self.tok.decode(p[:], skip_special_tokens=True).strip() for p in parts[:n_fields])
        return texts if all(texts) else None

    def batch_tensors(self, seqs: list[list[int]], device):
        import torch

        n = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), n), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return ids.to(device), mask.to(device)

    def example_losses(self, seqs: list[list[int]], device):
        """Per-example mean token cross-entropy of everything after the class token (texts, separator, eos)."""
        import torch.nn.functional as F

        ids, mask = self.batch_tensors(seqs, device)
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target, tmask = ids[:, 1:], mask[:, 1:].float()
        ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
        return (ce * tmask).sum(1) / tmask.sum(1)

    def conditioning_accuracy(self, texts, labels, max_length: int, device, batch_size: int = 32) -> float:
        """How well the class tokens condition the generator: the share of examples whose own class gives them the
        lowest loss (a generative classifier; chance = 1 / classes). Meant for the dev split: it needs no learner,
        so it is a cheap signal for choosing stage 1's steps and learning rate."""
        import torch

        from dilmbench.finetune import micro_batches

        self.model.eval()
        losses = np.zeros((len(texts), self.num_labels))
        with torch.inference_mode():
            for c in range(self.num_labels):
                seqs = [self.encode_example(t, c, max_length) for t in texts]
                # length-sorted chunks of at most batch_size full-length rows' worth of (padded) tokens
                for part in micro_batches([len(s) for s in seqs], batch_size * max_length):
                    losses[part, c] = self.example_losses([seqs[j] for j in part], device).float().cpu().numpy()
        return float((losses.argmin(1) == np.asarray(labels)).mean())

    def sample(self, label: int, n: int, n_fields: int, seed: int, top_p: float, top_k: int, max_new_tokens: int,
               batch_size: int, device, max_tries: int = 20) -> tuple[list[tuple[str, ...]], list[list[int]]]:
        """n sampled examples of a class; outputs that do not decode (a pair without separator) are regenerated."""
        import torch

        self.model.eval()
        texts, seqs = [], []
        gen = torch.Generator(device="cpu").manual_seed(seed)
        tries = 0
        while len(texts) < n:
            b = min(batch_size, n - len(texts))
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            start = torch.full((b, 1), self.class_ids[label], dtype=torch.long, device=device)
            with torch.inference_mode():
                out = self.model.generate(input_ids=start, attention_mask=torch.ones_like(start), do_sample=True,
                                          top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens,
                                          eos_token_id=self.eos_id, pad_token_id=self.pad_id,
                                          bad_words_ids=[[c] for c in self.class_ids])
            good = 0
            for row in out.tolist():
                body = row[1:]
                t = self.decode(body, n_fields)
                if t is None:
                    continue
                end = body.index(self.eos_id) + 1 if self.eos_id in body else len(body)
                texts.append(t)
                seqs.append([self.class_ids[label]] + body[:end])
                good += 1
            tries = tries + 1 if good == 0 else 0
            if tries >= max_tries:
                raise DilmbenchError(f"generator produced no usable example of class {label} in {max_tries} batches")
        return texts[:n], seqs[:n]


# ------------------------------------------------------------------------------------------------------------
# the learner head's gradient: efficient (body under no_grad) and the reference's way (full autograd)
# ------------------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------------------
def _save_state(path: Path, gen: Generator, opt, sched, step: int, extra: dict | None = None,
                resume: dict | None = None):
    """A checkpoint directory, published by an atomic rename so a kill leaves the previous one intact.
    ``extra`` goes to progress.json (readable); ``resume`` (anything picklable the stage needs to continue exactly,
    e.g. stage 2's current diverse-batch pool) to trainer_state.pt."""
    import shutil

    import torch

    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gen.model.save_pretrained(tmp)
    gen.tok.save_pretrained(tmp)
    torch.save({"optimizer": opt.state_dict() if opt else None, "scheduler": sched.state_dict() if sched else None,
                "torch_rng": torch.get_rng_state(), "step": step, "resume": resume or {}}, tmp / "trainer_state.pt")
    (tmp / "progress.json").write_text(json.dumps({"step": step, **(extra or {})}))
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def _load_progress(path: Path) -> dict | None:
    try:
        return json.loads((path / "progress.json").read_text())
    except (OSError, ValueError):
        return None


def _open_stage(out: Path, num_labels: int, fresh, recipe, seed: int, device):
    """A training stage's starting point -> (generator, optimizer, scheduler, start step, resume state).

    A finished stage (out/final) returns its generator and no optimizer; a killed one resumes from out/last with its
    optimizer, scheduler and RNG state; otherwise ``fresh()`` gives the generator and the RNG is seeded."""
    import torch

    from dilmbench.finetune import make_optimizer

    final, ckpt = out / "final", out / "last"
    if _load_progress(final):
        return Generator.from_pretrained(str(final), num_labels, add_tokens=False), None, None, recipe.steps, {}
    progress = _load_progress(ckpt)
    gen = Generator.from_pretrained(str(ckpt), num_labels, add_tokens=False) if progress else fresh()
    gen.model.to(device)
    opt, sched = make_optimizer(gen.model, recipe)
    torch.manual_seed(seed)  # dropout
    start, resume = 0, {}
    if progress:
        state = torch.load(ckpt / "trainer_state.pt", weights_only=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        start, resume = state["step"], state.get("resume") or {}
    return gen, opt, sched, start, resume


# ------------------------------------------------------------------------------------------------------------
# the method
# ------------------------------------------------------------------------------------------------------------
class DiLMMethod(Method):
    """DiLM: a generator LM trained by gradient matching (probability-weighted loss) writes the sets; k-centers picks DPC."""

    default_config = dict(PAPER)
    use_gradient_matching = True
    needs_embeddings = True  # teacher sets and the final k-centers use the encoder; its id joins the set's identity

    def __init__(self, **config):
        super().__init__(**config)
        self.config["gm"] = self.use_gradient_matching
        self._gen: Generator | None = None

    def required_models(self, ctx_encoder: str) -> list[str]:
        return [ctx_encoder, self.config["generator"], self.config["learner"]]

    # --- identity of the trained generator ---------------------------------------------------------------
    def _cfg(self, task) -> dict:
        cfg = dict(self.config)
        if task.is_pair:
            for k, v in PAIR_TASK_OVERRIDES.items():
                if self.config[k] == PAPER[k]:
                    cfg[k] = v
        return cfg

    def _stage_dirs(self, ctx: MethodContext) -> tuple[Path, Path]:
        cfg = self._cfg(ctx.task)
        data_id = {k: v for k, v in ctx.data.provenance().items() if k != "source"}
        lm_keys = ["generator", "lm_steps", "lm_batch_size", "lm_lr", "lm_weight_decay", "lm_warmup_ratio", "max_length", "seed"]
        lm_hash = stable_hash({"task": ctx.task.name, "data": data_id, **{k: cfg[k] for k in lm_keys}})
        not_gm = set(lm_keys) | {"sample_factor", "ckpt_every", "lm_micro_batch_tokens"}  # stage 3 only / no effect on the weights
        gm_hash = stable_hash({"lm": lm_hash, "encoder": ctx.encoder, "pooling": ctx.pooling,
                               **{k: v for k, v in cfg.items() if k not in not_gm}})
        root = Path(ctx.cache_dir) / "dilm" / ctx.task.name
        return root / f"lm-{lm_hash}", root / f"gm-{gm_hash}"

    def identity(self) -> dict:
        # without gradient matching the stage-2 settings change nothing, so they stay out of the identity (a new
        # gm_lr must not throw away dilm_vanilla's finished runs)
        cfg = self.config if self.config["gm"] else {k: v for k, v in self.config.items() if k not in STAGE2_KEYS}
        return {"method": self.name, "config": cfg}

    # --- stage 1 -------------------------------------------------------------------------------------------
    def train_lm(self, ctx: MethodContext, out: Path) -> Generator:
        import torch

        from dilmbench.finetune import FinetuneRecipe, endless_batches, micro_batches
        from tqdm.auto import tqdm

        cfg = self._cfg(ctx.task)
        recipe = FinetuneRecipe(steps=cfg["lm_steps"], lr=cfg["lm_lr"], weight_decay=cfg["lm_weight_decay"],
                                warmup_ratio=cfg["lm_warmup_ratio"], max_grad_norm=1.0)
        gen, opt, sched, start, _ = _open_stage(
            out, ctx.task.num_labels, lambda: Generator.from_pretrained(cfg["generator"], ctx.task.num_labels),
            recipe, cfg["seed"], ctx.device)
        if opt is None:
            return gen
        gen.model.train()
        texts, labels = ctx.data.texts("pool"), ctx.data.labels("pool")
        batches = endless_batches(len(texts), min(cfg["lm_batch_size"], len(texts)), cfg["seed"])
        for _ in range(start):  # replay the batch order so a resumed run sees the same data
            next(batches)
        bar = tqdm(range(start, cfg["lm_steps"]), desc="dilm stage 1 (LM)", disable=not ctx.progress,
                   initial=start, total=cfg["lm_steps"])
        micro = FinetuneRecipe(micro_batch_tokens=cfg["lm_micro_batch_tokens"]).micro_tokens(ctx.device)
        for step in bar:
            idx = next(batches)
            seqs = [gen.encode_example(texts[i], int(labels[i]), cfg["max_length"]) for i in idx]
            opt.zero_grad(set_to_none=True)
            loss = 0.0
            # the batch loss is the mean of per-example losses; length-sorted micro-batches each add their share
            # (sum / batch size), so the gradient is that of one padded batch without the padding's compute
            for chunk in micro_batches([len(x) for x in seqs], micro):
                with _autocast(ctx.device, cfg["bf16"]):
                    part = gen.example_losses([seqs[i] for i in chunk], ctx.device).sum() / len(seqs)
                part.backward()
                loss += float(part.detach())
            torch.nn.utils.clip_grad_norm_(gen.model.parameters(), 1.0)
            opt.step()
            sched.step()
            bar.set_postfix(loss=f"{loss:.3f}")
            if (step + 1) % cfg["ckpt_every"] == 0 and step + 1 < cfg["lm_steps"]:
                _save_state(out / "last", gen, opt, sched, step + 1)
        _save_state(out / "final", gen, None, None, cfg["lm_steps"])
        return gen

    # --- stage 2 -------------------------------------------------------------------------------------------
    def teacher_sets(self, ctx: MethodContext, cfg: dict) -> list[dict[int, np.ndarray]]:
        """Representative teachers: n_repsets k-centre sets of repset_dpc per class (seeds 0..n-1), pool rows."""
        emb, labels = ctx.pool_embeddings(), ctx.data.labels("pool")
        sets = []
        for s in range(cfg["n_repsets"]):
            per = {}
            for c in range(ctx.task.num_labels):
                rows = np.flatnonzero(labels == c)
                k = min(cfg["repset_dpc"], len(rows))
                per[c] = rows[k_centers(emb[rows], k, seed=s, backend=cfg["select_backend"])]
            sets.append(per)
        return sets

    def diverse_batches(self, gen: Generator, learner, learner_tok, ctx, cfg, seed: int) -> dict[int, list]:
        """Generate a pool per class, cluster it into n_clusters on the learner's [CLS] features, and build batches
        that take one member of every cluster. Returns {class: [(gen seqs, learner features), ...]}."""
        import torch

        from dilmbench.batching import collate, tokenize

        rng = np.random.default_rng(seed)
        out = {}
        n_fields = len(ctx.task.text_fields)
        for c in range(ctx.task.num_labels):
            texts, seqs = gen.sample(c, cfg["pool_batches"] * cfg["syn_batch"], n_fields, seed * 100 + c, cfg["top_p"],
                                     cfg["top_k"], cfg["max_new_tokens"], cfg["gen_batch_size"], ctx.device)
            feats = tokenize(learner_tok, texts, cfg["max_length"])  # tokenized once per pool
            with torch.no_grad():
                cls = np.concatenate([
                    learner.base_model(**collate(learner_tok, feats[i:i + 128], ctx.device)).last_hidden_state[:, 0].float().cpu().numpy()
                    for i in range(0, len(feats), 128)])
            k = min(cfg["n_clusters"], len(texts))
            assign, _ = kmeans_labels(cls, k, seed=int(rng.integers(2**31 - 1)), backend="faiss" if len(texts) > 5000 else "sklearn")
            members = [np.flatnonzero(assign == j) for j in range(k)]
            members = [m for m in members if len(m)]
            batches = []
            for _ in range(cfg["pool_batches"]):
                pick = [int(rng.choice(m)) for m in members]
                while len(pick) < cfg["syn_batch"]:
                    pick.append(int(rng.integers(len(texts))))
                batches.append(([seqs[i] for i in pick], [feats[i] for i in pick]))
            out[c] = batches
        return out

    def gradient_matching(self, ctx: MethodContext, gen: Generator, out: Path) -> Generator:
        import torch

        from dilmbench.batching import collate, tokenize
        from dilmbench.finetune import FinetuneRecipe, endless_batches, load_classifier, make_optimizer, train_step
        from dilmbench.models import load_tokenizer
        from tqdm.auto import tqdm

        cfg = self._cfg(ctx.task)
        total = cfg["outer_loops"] * cfg["inner_loops"]
        recipe = FinetuneRecipe(steps=total, lr=cfg["gm_lr"], weight_decay=cfg["gm_weight_decay"],
                                warmup_ratio=cfg["gm_warmup_ratio"], max_grad_norm=1.0)
        gen, opt, sched, start, resume = _open_stage(out, ctx.task.num_labels, lambda g=gen: g, recipe, cfg["seed"] + 1,
                                                     ctx.device)
        if opt is None:
            return gen
        start_outer = start // cfg["inner_loops"]
        C = ctx.task.num_labels
        learner_tok = load_tokenizer(cfg["learner"])
        teachers = self.teacher_sets(ctx, cfg)
        pool_texts, pool_labels = ctx.data.texts("pool"), ctx.data.labels("pool")
        pool_feats = {}  # tokenized real examples, cached across steps

        def feats_of(rows):
            missing = [int(r) for r in rows if int(r) not in pool_feats]
            if missing:
                for r, f in zip(missing, tokenize(learner_tok, [pool_texts[r] for r in missing], cfg["max_length"])):
                    pool_feats[r] = f
            return [pool_feats[int(r)] for r in rows]

        eval_recipe = FinetuneRecipe(max_batch_size=cfg["learner_batch_size"],
                                     steps=cfg["inner_loops"] * cfg["learner_steps"])
        real_batches = endless_batches(len(pool_texts), cfg["learner_batch_size"], cfg["seed"] + 1)
        for _ in range(start_outer * (cfg["inner_loops"] - 1) * cfg["learner_steps"]):
            next(real_batches)  # a resumed run continues the same stream of real batches
        bar = tqdm(range(start_outer, cfg["outer_loops"]), desc="dilm stage 2 (gradient matching)",
                   disable=not ctx.progress, initial=start_outer, total=cfg["outer_loops"])
        # a resumed run continues with the diverse-batch pool it had (regenerating it would change the matching)
        batches, log = resume.get("batches"), list(resume.get("grad_sim", []))
        for outer in bar:
            if batches is None or outer % cfg["gen_interval"] == 0:
                probe = load_classifier(cfg["learner"], C, cfg["seed"] + outer, ctx.device)
                batches = self.diverse_batches(gen, probe, learner_tok, ctx, cfg, seed=cfg["seed"] + outer)
                del probe
            # each outer loop: the learner restarts from its pretrained body with a fresh head
            learner = load_classifier(cfg["learner"], C, cfg["seed"] * 7919 + outer, ctx.device)
            l_opt, l_sched = make_optimizer(learner, eval_recipe)
            gen.model.train()
            for inner in range(cfg["inner_loops"]):
                learner.eval()  # matching passes: deterministic features (no dropout)
                opt.zero_grad(set_to_none=True)
                sims = []
                teacher = teachers[(outer * cfg["inner_loops"] + inner) % len(teachers)]
                for c in range(C):
                    rows = teacher[c]
                    rng = np.random.default_rng([cfg["seed"], outer, inner, c])
                    g_real = 0
                    for _ in range(cfg["real_accum"]):
                        pick = rows[rng.choice(len(rows), min(cfg["real_batch"], len(rows)), replace=False)]
                        rb = collate(learner_tok, feats_of(pick), ctx.device)
                        g_real = g_real + head_gradient(learner, rb, torch.full((len(pick),), c, device=ctx.device))
                    g_real = (g_real / cfg["real_accum"]).detach()
                    seqs, sfeats = batches[c][(outer * cfg["inner_loops"] + inner) % len(batches[c])]
                    with _autocast(ctx.device, cfg["bf16"]):
                        gen_loss = gen.example_losses(seqs, ctx.device)
                    w = torch.softmax(-gen_loss.float() / cfg["tau"], dim=0)
                    sb = collate(learner_tok, sfeats, ctx.device)
                    g_syn = head_gradient(learner, sb, torch.full((len(seqs),), c, device=ctx.device), weights=w,
                                          create_graph=True)
                    loss_c = matching_loss(g_real, g_syn) / C
                    loss_c.backward()  # per class, as the reference, to bound memory
                    sims.append(1 - float(loss_c.detach()) * C)
                torch.nn.utils.clip_grad_norm_(gen.model.parameters(), 1.0)
                opt.step()
                sched.step()
                log.append(float(np.mean(sims)))
                if inner + 1 < cfg["inner_loops"]:  # the learner moves along a real fine-tuning trajectory
                    learner.train()
                    for _ in range(cfg["learner_steps"]):
                        idx = next(real_batches)
                        train_step(learner, learner_tok, feats_of(idx), torch.as_tensor(pool_labels[idx]), l_opt,
                                   l_sched, eval_recipe, ctx.device)
            bar.set_postfix(grad_sim=f"{np.mean(log[-cfg['inner_loops']:]):.3f}")
            if (outer + 1) % max(1, cfg["ckpt_every"] // cfg["inner_loops"]) == 0 and outer + 1 < cfg["outer_loops"]:
                _save_state(out / "last", gen, opt, sched, (outer + 1) * cfg["inner_loops"], {"grad_sim": log[-50:]},
                            resume={"batches": batches, "grad_sim": log})
        _save_state(out / "final", gen, None, None, total, {"grad_sim": log[-50:]})
        return gen

    # --- the method interface ------------------------------------------------------------------------------
    def prepare(self, ctx: MethodContext) -> None:
        lm_dir, gm_dir = self._stage_dirs(ctx)
        t0 = time.perf_counter()
        gen = self.train_lm(ctx, lm_dir)
        if self.config["gm"]:
            gen = self.gradient_matching(ctx, gen, gm_dir)
        gen.model.to(ctx.device).eval()
        self._gen = gen
        self._gen_dir = (gm_dir if self.config["gm"] else lm_dir) / "final"
        self._prepare_s = time.perf_counter() - t0

    def make_set(self, ctx: MethodContext, dpc: int, seed: int, set_index: int) -> TextSet:
        from dilmbench.embed import encode
        from dilmbench.models import load_pretrained, load_tokenizer
        from transformers import AutoModel

        if self._gen is None:
            self.prepare(ctx)
        cfg = self._cfg(ctx.task)
        n_fields = len(ctx.task.text_fields)
        enc_tok = load_tokenizer(ctx.encoder)
        encoder = load_pretrained(AutoModel, ctx.encoder).to(ctx.device)
        texts, labels = [], []
        for c in range(ctx.task.num_labels):
            cand, _ = self._gen.sample(c, dpc * cfg["sample_factor"], n_fields, seed * 10 + c, cfg["top_p"], cfg["top_k"],
                                       cfg["max_new_tokens"], cfg["gen_batch_size"], ctx.device)
            if dpc * cfg["sample_factor"] > dpc:
                emb = encode(cand, encoder, enc_tok, pooling=ctx.pooling, device=ctx.device)
                keep = k_centers(emb, dpc, seed=seed + c, backend=cfg["select_backend"])
            else:
                keep = range(dpc)
            texts.extend(cand[i] for i in keep)
            labels.extend([c] * dpc)
        return TextSet(task=ctx.task.name, text_fields=ctx.task.text_fields, texts=texts, labels=labels,
                       provenance={"method": self.name, "config": cfg, "seed": seed, "dpc": dpc, "source": "generated",
                                   "generator_checkpoint": str(self._gen_dir), "encoder": ctx.encoder,
                                   "pooling": ctx.pooling})


class DiLMVanillaMethod(DiLMMethod):
    """DiLM's "Vanilla LM" ablation: the generator after LM training only (no gradient matching), same selection."""

    use_gradient_matching = False


def _autocast(device, bf16: bool):
    """The core's autocast (bf16 on CUDA, none on CPU), unless the config turns bf16 off."""
    from contextlib import nullcontext

    from dilmbench.finetune import autocast_for

    return autocast_for(device) if bf16 else nullcontext()
