"""DiLM (Maekawa et al., NAACL 2024 Findings, arXiv 2404.00264): a generator LM trained by gradient matching writes
the text sets. Reference code: arumaekawa/DiLM.

Stage 1 trains a causal LM to write examples of a given class (:mod:`.generator`). Stage 2 fine-tunes it by gradient
matching: the generator's per-example losses weight the learner's loss on generated examples,
w = softmax(-loss_gen / tau), so the cosine distance between the learner head's gradient on real and on generated data
reaches the generator (:mod:`.matching`). Stage 3 samples DPC x sample_factor texts per class and keeps DPC with
k-centers on encoder embeddings. Both stages checkpoint under the cache (keyed by what changes their weights) and
resume from their last checkpoint; one trained generator serves every DPC and set index.

Deviations from the reference, in every preset:
- the separator and pad rows start at the mean pretrained embedding (the reference's resize drew them at random), and
  the pad is never sampled;
- only the head's gradient is matched, computed with the body under no_grad (same numbers, tested);
- stage 1 keeps its last checkpoint (the reference keeps the one that scores best on its validation split, which
  this suite never reads for choosing).

The ``quick`` preset (:data:`QUICK`) deviates further, to run on a 2-core CPU in under 2 hours; each value was chosen
on the dev split carved from train (results/quick-sst2-dilm-tune/README.md):
- generator SmolLM2-135M-Instruct instead of gpt2 (not obtainable offline), learner MiniLM instead of BERT-base;
- class tokens start at their label word's embedding (" negative", " positive") instead of end-of-text, and move
  with a learning rate of their own (``new_token_lr`` 2e-3): with a few thousand LM steps instead of 80,000, rows that
  start as identical copies of end-of-text stay nearly identical (measured: 0.03 apart after 300 steps);
- the model's start token precedes the class token (``bos_prefix``): position 0 tends to act as an attention sink,
  and moving the class token to position 1 raised dev conditioning from 83.5% to 88.2%;
- stage 3 keeps only the fifth of each class's samples that the generator itself finds most typical of their class
  (``class_filter`` 0.2, :meth:`Generator.class_margins`) before k-centers, in the spirit of SuperGen's selection by
  generation probability (Meng et al., NeurIPS 2022); the reference keeps every sample. A 135M generator trained on
  6,400 examples still writes many neutral phrases ("the barbershop") under either class: on dev, judge agreement of
  DPC-5 sets rose from 75.0% to 92.5% and their dev accuracy from 61.5 to 65.7 (4 sets each);
- the generator's losses (stage 1, stage 2's weights, stage 3's class filter) on packed rows (``lm_pack``): the padded
  batch's math without the padding's compute, the output embedding only where a token is predicted, eager attention
  while training (in float32 the padded losses within rounding, tested; in bf16 other rounding, so a new
  configuration, off in the paper preset and for every generator made before it);
- stage 2's learner trajectory on packed rows, its dropout from the run's own stream (``learner_pack``: the same recipe
  up to rounding and dropout's draws, a new configuration, off in the paper preset);
- far fewer steps in both stages (400 LM steps of 16 at lr 1e-4; 10 x 5 matching updates at gm_lr 3e-6), shorter texts
  (64 tokens; on pair tasks 128, and 96 new tokens instead of the reference's 420: ``pair_overrides``), 10 samples per
  kept text instead of 100.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dilmbench import checkpoint
from dilmbench.api import Method, MethodContext
from dilmbench.cache import stable_hash
from dilmbench.cluster import k_centers
from dilmbench.errors import DilmbenchError
from dilmbench.seeds import derive_seed
from dilmbench.textset import TextSet

from .generator import Generator
from .stages import REFERENCE_GEN_LENGTH, max_new_tokens, stage_autocast, stage_seconds  # noqa: F401

from dilmbench.models import QUICK_MODEL as MINILM

PAPER = {
    "generator": "gpt2",
    "learner": "bert-base-uncased",
    # stage 1: LM training on the task's train split (the pool)
    "lm_steps": 80_000, "lm_batch_size": 64, "lm_lr": 1e-5, "lm_weight_decay": 0.01, "lm_warmup_ratio": 0.1,
    # generator training text truncated to this many tokens (None: the reference truncates only at the model's
    # 1,024); learner inputs (teacher batches, generated batches) to learner_max_length (the reference's 512)
    "max_length": None, "learner_max_length": 512,
    "class_token_init": "eos",  # or "label_words"
    "bos_prefix": False,  # the start token before the class token, so the class token is not the attention sink
    "new_token_lr": None,  # learning rate of the added rows (class tokens, separator, pad); None: lm_lr
    "loss_norm": "reference",  # summed token CE / padded length (the reference); "mean": each example's token mean
    # stage 1's batch as length-sorted micro-batches of at most this many tokens (same gradient; "auto": 0 on CUDA,
    # 512 on CPU)
    "lm_micro_batch_tokens": "auto",
    # stage 2: gradient matching
    "gm": True, "outer_loops": 2_000, "inner_loops": 10, "learner_steps": 20, "learner_batch_size": 64,
    "real_batch": 200, "real_accum": 1, "repset_dpc": 200, "n_repsets": 10,
    "syn_batch": 64, "tau": 1.0, "gm_lr": 3e-7, "gm_weight_decay": 0.01, "gm_warmup_ratio": 0.05,
    "gen_interval": 20, "pool_batches": 200, "n_clusters": 64,
    # stage 3: final sets. max_new_tokens "task": the reference's per-task total length minus the class token
    "sample_factor": 100, "top_p": 0.95, "top_k": 0, "gen_batch_size": 64, "max_new_tokens": "task",
    # keep only this share of each class's samples, those the generator itself finds likeliest under their own class
    # against the other classes (Generator.class_margins), before k-centers; None: off (the reference has no filter)
    "class_filter": None,
    "select_backend": "sklearn",
    "ckpt_every": 500, "seed": 0, "bf16": True,
    # on a CPU, every stage's forward passes (LM training, the generator's losses in matching, the learner's inner
    # fine-tuning, sampling) under bfloat16 autocast, one region per step, as on CUDA (``bf16``); weights, gradients
    # and optimizer state stay float32. Off: float32 on a CPU, as before the option existed (its identity unchanged)
    "cpu_bf16": False,
    # the generator's losses (stage 1's LM training, stage 2's weights, stage 3's class filter) on packed rows
    # (Generator.packed_example_losses: no padding's compute, the output embedding only where a token is predicted)
    # with eager attention while training; the padded losses' math (float32: within rounding, tested), not their
    # rounding, so a new configuration. Off: padded batches, as the reference and every generator before it
    "lm_pack": False,
    # stage 2's learner trajectory (its real fine-tuning steps between generator updates) on packed rows, its dropout
    # from the run's own stream (fastpath.PackedSteps): the same recipe and gradient up to rounding and dropout's draws,
    # so a new configuration. Off: finetune.train_step's padded micro-batches, as before the option existed
    "learner_pack": False,
    # settings that replace the ones above on a pair task (QQP, MNLI): the paper's real batches, 100 per class with 2
    # accumulated. An option set by hand is left out of them (it holds on every task). They join a set's identity on
    # pair tasks only (task_identity), so single-text results keep theirs.
    "pair_overrides": {"real_batch": 100, "real_accum": 2},
}

# DiLM at CPU scale; see the module docstring and results/quick-sst2-dilm-tune/README.md for how each was chosen.
QUICK = {
    "generator": "HuggingFaceTB/SmolLM2-135M-Instruct", "learner": MINILM,
    "lm_steps": 400, "lm_batch_size": 16, "lm_lr": 1e-4, "max_length": 64, "learner_max_length": 64,
    # one padded batch per LM step: under bf16 autocast 1.98 s a step against 2.80 s in micro-batches of 128 tokens
    # (which is what float32 wants; 2 threads, SmolLM2, 16 examples); the same gradient either way
    "lm_micro_batch_tokens": 0, "class_token_init": "label_words", "bos_prefix": True, "new_token_lr": 2e-3,
    "outer_loops": 10, "inner_loops": 5, "learner_steps": 20, "learner_batch_size": 64,
    "real_batch": 64, "repset_dpc": 64, "n_repsets": 3, "syn_batch": 16, "n_clusters": 16, "pool_batches": 10,
    "gen_interval": 5, "gm_lr": 3e-6, "sample_factor": 10, "gen_batch_size": 32, "max_new_tokens": 48,
    "class_filter": 0.2,
    "ckpt_every": 50, "bf16": False, "cpu_bf16": True,
    # packed generator losses: a stage-1 step 2.37x faster than one padded batch (SmolLM2, 16 SST-2 examples, bf16,
    # 2 threads: results/benchmarks/dilm_lm_step.txt), the generator's part of a matching update 2.20x
    "lm_pack": True,
    # stage 2's trajectory steps packed: 1.61x faster (MiniLM, 20 steps of 64 SST-2 rows: results/benchmarks/dilm_step.txt)
    "learner_pack": True,
    # pairs are longer: the 64 tokens that cover SST-2 would cut 8.8% of MNLI's training pairs (premise, separator,
    # hypothesis, SmolLM2 tokens), and 48 new tokens 23.0% of pairs written at MNLI's length; 128 / 96 cut 0.3% / 1.0%
    # (3,000 pool pairs: results/benchmarks/pair_lengths.txt). The learner reads 128, as the finetune evaluator does.
    "pair_overrides": {"real_accum": 2, "max_length": 128, "max_new_tokens": 96, "learner_max_length": 128},
}

# What stage 1's weights depend on (its cache key).
LM_KEYS = ("generator", "lm_steps", "lm_batch_size", "lm_lr", "lm_weight_decay", "lm_warmup_ratio", "max_length",
           "class_token_init", "bos_prefix", "new_token_lr", "loss_norm", "seed")
# Options added to stage 1's cache key after generators existed: in it only when set to other than their old value.
LM_LATER_KEYS = ("cpu_bf16", "lm_pack")
# Keys read only by stage 2 (gradient matching): they do not touch dilm_vanilla's generator or sets.
STAGE2_KEYS = {"learner", "learner_max_length", "outer_loops", "inner_loops", "learner_steps", "learner_batch_size",
               "learner_pack",
               "real_batch", "real_accum", "repset_dpc", "n_repsets", "syn_batch", "tau", "gm_lr", "gm_weight_decay",
               "gm_warmup_ratio", "gen_interval", "pool_batches", "n_clusters"}
# Keys that change no trained weight: stage 3 only, or speed only.
NOT_WEIGHTS = {"sample_factor", "top_p", "top_k", "gen_batch_size", "select_backend", "ckpt_every",
               "lm_micro_batch_tokens", "class_filter",
               "pair_overrides"}  # applied by task_config: the values it sets are hashed, not the option


def _less_hand_set(pair_overrides: dict, options: dict) -> dict:
    """Pair settings less those the user set by hand: an option set by hand holds on pair tasks too."""
    return {k: v for k, v in pair_overrides.items() if k not in options}


class NewRowsLR:
    """A learning rate of their own for some embedding rows under AdamW: the optimizer steps every row at the base
    rate, then these rows' step is scaled by rate / base rate. AdamW's step is linear in the learning rate for a given
    optimizer state (the decoupled weight decay too), so this is exactly AdamW with that rate for these rows."""

    def __init__(self, model, rows: list[int], base_lr: float, lr: float | None):
        self.rows, self.ratio = rows, (1.0 if lr is None else lr / base_lr)
        tables = [model.get_input_embeddings().weight]
        out = model.get_output_embeddings()
        if out is not None and out.weight.data_ptr() != tables[0].data_ptr():
            tables.append(out.weight)
        self.tables = tables
        self._before = None

    def before_step(self):
        if self.ratio != 1.0:
            self._before = [t.detach()[self.rows].clone() for t in self.tables]

    def after_step(self):
        if self.ratio != 1.0:
            import torch

            with torch.no_grad():
                for t, before in zip(self.tables, self._before):
                    t[self.rows] = before + self.ratio * (t[self.rows] - before)


class DiLMMethod(Method):
    """DiLM: a generator LM trained by gradient matching (probability-weighted loss) writes the sets; k-centers picks DPC."""

    default_config = dict(PAPER)
    presets = {"quick": QUICK}
    use_gradient_matching = True
    writes_texts = True
    needs_embeddings = True  # teacher sets and the final k-centers use the encoder; its id joins the set's identity
    # options added after sets existed, at the value that behaves as before: finished sets keep their identity
    later_defaults = {"class_filter": None, "cpu_bf16": False, "lm_pack": False, "learner_pack": False}

    @classmethod
    def for_preset(cls, preset: str | None, **options) -> "DiLMMethod":
        base = cls.presets.get(preset, {})
        if "pair_overrides" in base and "pair_overrides" not in options:
            options = {**options, "pair_overrides": _less_hand_set(base["pair_overrides"], options)}
        return cls(**{**base, **options})

    def __init__(self, **config):
        if "pair_overrides" not in config:
            config["pair_overrides"] = _less_hand_set(PAPER["pair_overrides"], config)
        super().__init__(**config)
        self.config["gm"] = self.use_gradient_matching
        unknown = set(self.config["pair_overrides"] or {}) - (set(self.default_config) - {"pair_overrides", "gm"})
        if unknown:
            raise DilmbenchError(f"method '{self.name}': pair_overrides names unknown option(s) {sorted(unknown)}")
        self._gen: Generator | None = None

    def required_models(self, ctx_encoder: str) -> list[str]:
        return [ctx_encoder, self.config["generator"], self.config["learner"]]

    # --- identity of the trained generator ---------------------------------------------------------------
    def task_config(self, task) -> dict:
        """The settings in force on ``task``: the config, with ``pair_overrides`` applied on a pair task."""
        cfg = dict(self.config)
        if task.is_pair:
            cfg.update(self.config["pair_overrides"] or {})
        return cfg

    def stage_dirs(self, ctx: MethodContext) -> tuple[Path, Path]:
        from dilmbench.api import identity_config

        # (at their old values, the later options leave the cache keys as they always were)
        cfg = identity_config(self.task_config(ctx.task), self.later_defaults)
        data_id = {k: v for k, v in ctx.data.provenance().items() if k != "source"}
        lm_keys = LM_KEYS + tuple(k for k in LM_LATER_KEYS if k in cfg)
        lm_hash = stable_hash({"task": ctx.task.name, "data": data_id, **{k: cfg[k] for k in lm_keys}})
        gm_hash = stable_hash({"lm": lm_hash, "encoder": ctx.encoder, "pooling": ctx.pooling, **ctx.embed_identity(),
                               **{k: v for k, v in cfg.items() if k not in set(LM_KEYS) | NOT_WEIGHTS}})
        root = Path(ctx.cache_dir) / "dilm" / ctx.task.name
        return root / f"lm-{lm_hash}", root / f"gm-{gm_hash}"

    def identity(self) -> dict:
        ident = super().identity()  # name, config (less the later defaults), version / plugin file hash
        if not self.config["gm"]:
            # without gradient matching the stage-2 settings change nothing, so they stay out of the identity (a new
            # gm_lr must not throw away dilm_vanilla's finished runs)
            ident["config"] = {k: v for k, v in ident["config"].items() if k not in STAGE2_KEYS}
        ident["config"].pop("pair_overrides", None)  # joins on pair tasks only: task_identity
        return ident

    def task_identity(self, task) -> dict:
        if not task.is_pair:
            return {}
        over = dict(self.config["pair_overrides"] or {})
        if not self.config["gm"]:
            over = {k: v for k, v in over.items() if k not in STAGE2_KEYS}
        return {"pair_overrides": over}

    def new_generator(self, ctx: MethodContext) -> Generator:
        cfg = self.config
        gen = Generator.from_pretrained(cfg["generator"], ctx.task.num_labels, class_init=cfg["class_token_init"],
                                        label_names=ctx.task.label_names, loss_norm=cfg["loss_norm"],
                                        bos_prefix=cfg["bos_prefix"])
        gen.amp = self.sampling_precision
        gen.pack = bool(cfg["lm_pack"])
        return gen

    def sampling_precision(self, device):
        """The generator's inference passes (sampling, class likelihoods): bfloat16 autocast on a CPU with
        ``cpu_bf16``; otherwise as they always ran (float32)."""
        from contextlib import nullcontext

        from dilmbench.finetune import autocast_for

        if self.config.get("cpu_bf16") and str(device).startswith("cpu"):
            return autocast_for(device, cpu_bf16=True)
        return nullcontext()

    def open_stage(self, out: Path, ctx: MethodContext, fresh, recipe, seed: int):
        """A training stage's starting point -> (generator, optimizer, scheduler, start step, resume state).

        A finished stage (out/final) returns its generator and no optimizer; a killed one resumes from out/last with
        its optimizer, scheduler and RNG state; otherwise ``fresh()`` gives the generator and the RNG is seeded."""
        import torch

        from dilmbench.finetune import make_optimizer

        final, last = out / "final", out / "last"

        def load(path):
            gen = Generator.from_pretrained(str(path), ctx.task.num_labels, add_tokens=False,
                                            loss_norm=self.config["loss_norm"], bos_prefix=self.config["bos_prefix"])
            gen.amp = self.sampling_precision
            gen.pack = bool(self.config["lm_pack"])
            return gen

        if checkpoint.load_progress(final):
            return load(final), None, None, recipe.steps, {}
        progress = checkpoint.load_progress(last)
        resuming = progress is not None
        gen = load(last) if resuming else fresh()
        gen.model.to(ctx.device)
        opt, sched = make_optimizer(gen.model, recipe)
        torch.manual_seed(seed)  # dropout
        start, resume = checkpoint.restore_trainer_state(last, opt, sched) if resuming else (0, {})
        # wall seconds the stage already spent before a kill, so its recorded time is the whole stage's
        resume = {**resume, "seconds_before": (progress or {}).get("seconds", 0.0), "t0": time.perf_counter()}
        return gen, opt, sched, start, resume

    # --- stage 1 -------------------------------------------------------------------------------------------
    def train_lm(self, ctx: MethodContext, out: Path) -> Generator:
        import torch
        from dilmbench.progress import progress

        from dilmbench.finetune import FinetuneRecipe, endless_batches, micro_batches

        from .generator import reference_padded_length

        cfg = self.task_config(ctx.task)
        recipe = FinetuneRecipe(steps=cfg["lm_steps"], lr=cfg["lm_lr"], weight_decay=cfg["lm_weight_decay"],
                                warmup_ratio=cfg["lm_warmup_ratio"], max_grad_norm=1.0)
        gen, opt, sched, start, resume = self.open_stage(out, ctx, lambda: self.new_generator(ctx), recipe,
                                                          cfg["seed"])
        if opt is None:
            return gen
        gen.model.train()
        eager = gen.training_attention()
        rows_lr = NewRowsLR(gen.model, gen.new_token_ids, cfg["lm_lr"], cfg["new_token_lr"])
        texts, labels = ctx.data.texts("pool"), ctx.data.labels("pool")
        batches = endless_batches(len(texts), min(cfg["lm_batch_size"], len(texts)), cfg["seed"])
        for _ in range(start):  # replay the batch order so a resumed run sees the same data
            next(batches)
        bar = progress(range(start, cfg["lm_steps"]), desc="dilm stage 1 (LM)", enabled=ctx.progress,
                       initial=start, total=cfg["lm_steps"])
        micro = FinetuneRecipe(micro_batch_tokens=cfg["lm_micro_batch_tokens"]).micro_tokens(ctx.device)
        for step in bar:
            idx = next(batches)
            seqs = [gen.encode_example(texts[i], int(labels[i]), cfg["max_length"]) for i in idx]
            padded = reference_padded_length([len(x) for x in seqs])
            opt.zero_grad(set_to_none=True)
            loss = 0.0
            # the batch loss is the mean of per-example losses; length-sorted micro-batches each add their share
            # (sum / batch size, normalised by the whole batch's padded length), so the gradient is that of one
            # padded batch without the padding's compute
            # packed rows hold the whole batch in one forward
            chunks = [range(len(seqs))] if gen.packs() else micro_batches([len(x) for x in seqs], micro)
            if cfg.get("cpu_bf16") and str(ctx.device).startswith("cpu"):
                # one autocast region for the whole batch (each weight cast once per step) and one backward
                with stage_autocast(ctx.device, cfg):
                    total = sum(gen.losses([seqs[i] for i in chunk], ctx.device, padded).sum() / len(seqs)
                                for chunk in chunks)
                total.backward()
                loss = float(total.detach())
            else:
                for chunk in chunks:
                    with stage_autocast(ctx.device, cfg):
                        part = gen.losses([seqs[i] for i in chunk], ctx.device, padded).sum() / len(seqs)
                    part.backward()
                    loss += float(part.detach())
            torch.nn.utils.clip_grad_norm_(gen.model.parameters(), 1.0)
            rows_lr.before_step()
            opt.step()
            rows_lr.after_step()
            sched.step()
            bar.set_postfix(loss=f"{loss:.3f}")
            if (step + 1) % cfg["ckpt_every"] == 0 and step + 1 < cfg["lm_steps"]:
                checkpoint.save_state(out / "last", gen.model, gen.tok, opt, sched, step + 1,
                                      {"seconds": stage_seconds(resume)})
        eager.restore()
        checkpoint.save_state(out / "final", gen.model, gen.tok, None, None, cfg["lm_steps"],
                              {"seconds": stage_seconds(resume)})
        return gen

    # --- stage 2 -------------------------------------------------------------------------------------------
    def gradient_matching(self, ctx: MethodContext, gen: Generator, out: Path) -> Generator:
        from .matching import GradientMatching

        return GradientMatching(self, ctx, self.task_config(ctx.task)).run(gen, out)

    # --- the method interface ------------------------------------------------------------------------------
    def prepare(self, ctx: MethodContext) -> None:
        lm_dir, gm_dir = self.stage_dirs(ctx)
        t0 = time.perf_counter()
        gen = self.train_lm(ctx, lm_dir)
        if self.config["gm"]:
            gen = self.gradient_matching(ctx, gen, gm_dir)
        gen.model.to(ctx.device).eval()
        self._gen = gen
        self._gen_dir = (gm_dir if self.config["gm"] else lm_dir) / "final"
        self._prepare_s = time.perf_counter() - t0
        # each stage's own wall time, recorded when it was trained (None for generators trained before this)
        self._stage_seconds = {"lm": (checkpoint.load_progress(lm_dir / "final") or {}).get("seconds")}
        if self.config["gm"]:
            self._stage_seconds["gm"] = (checkpoint.load_progress(gm_dir / "final") or {}).get("seconds")

    def make_set(self, ctx: MethodContext, dpc: int, seed: int, set_index: int) -> TextSet:
        from dilmbench.embed import embed_texts

        if self._gen is None:
            self.prepare(ctx)
        cfg = self.task_config(ctx.task)
        n_fields = len(ctx.task.text_fields)
        texts, labels, sampling = [], [], {}
        for c in range(ctx.task.num_labels):
            sampling[ctx.task.label_names[c]] = stats = {}
            cand, _ = self._gen.sample(c, dpc * cfg["sample_factor"], n_fields, derive_seed(seed, "sample", c),
                                       cfg["top_p"], cfg["top_k"], max_new_tokens(cfg, ctx.task),
                                       cfg["gen_batch_size"], ctx.device, stats=stats)
            if cfg["class_filter"] is not None:
                cand = self.filter_by_class(cand, c, dpc, cfg["class_filter"], ctx.device)
            if len(cand) > dpc:
                emb = embed_texts(cand, ctx.encoder, ctx.pooling, ctx.device, ctx.embed_dtype)
                keep = k_centers(emb, dpc, seed=derive_seed(seed, "select", c), backend=cfg["select_backend"])
            else:
                keep = range(dpc)
            texts.extend(cand[i] for i in keep)
            labels.extend([c] * dpc)
        return TextSet(task=ctx.task.name, text_fields=ctx.task.text_fields, texts=texts, labels=labels,
                       provenance={"method": self.name, "config": cfg, "seed": seed, "dpc": dpc, "source": "generated",
                                   "generator_checkpoint": str(self._gen_dir),
                                   "generator_stage_seconds": self._stage_seconds, "encoder": ctx.encoder,
                                   # per class: samples drawn and how many decoded (a pair needs its separator)
                                   "sampling": sampling,
                                   "pooling": ctx.pooling, **ctx.embed_identity()})


    def estimate_cost(self, cctx, dpc: int) -> list | None:
        """Stage 1 (lm_steps LM steps) and stage 2 (outer x inner matching updates, the learner's trajectory, a fresh
        sample pool every gen_interval outer loops) once per task; stage 3 per set (DPC x sample_factor samples per
        class, the class filter's likelihoods, the encoder pass k-centers reads). Sampling length: each batch runs to
        its longest text, the expected longest of gen_batch_size texts like the pool's (or every sample to
        max_new_tokens with ``cctx.generation == "max"``, as an untrained generator writes)."""
        from dilmbench.cost import StageCost, decoding, expected_batch_max, model_shape

        cfg = self.task_config(cctx.task)
        gen, learner = model_shape(cfg["generator"]), model_shape(cfg["learner"])
        enc = model_shape(cctx.encoder) if cctx.encoder else None
        if gen is None or (self.config["gm"] and learner is None) or enc is None:
            return None
        C = cctx.task.num_labels
        pool = cctx.pool_lengths
        lm_cap = cfg["max_length"] or gen.positions
        new = max_new_tokens(cfg, cctx.task)

        def sample_len(batch):
            if cctx.generation == "max":
                return float(new + 1)
            return min(expected_batch_max(pool, batch), new + 1.0)

        def sampling(n, batch):
            """n samples, decoded batch by batch with a KV cache (per-token FLOPs at half the length); each decoding
            step reads every weight once (memory-bound at small batches)."""
            length = sample_len(batch)
            flops, steps = decoding(gen, n, length, batch)
            return flops, length, steps * gen.params * cctx.weight_bytes, steps

        lm_batch = cfg["lm_batch_size"]
        lm_len = expected_batch_max(pool, lm_batch, lm_cap)
        act = cctx.act_scale
        stages = [StageCost("stage 1: LM training", cfg["lm_steps"] * 3 * gen.forward_flops(lm_batch * lm_len, lm_len, True),
                            gen.train_bytes(lm_batch, int(lm_len), lm_head=True, act_scale=act), per="task",
                            steps=cfg["lm_steps"])]
        if self.config["gm"]:
            l_cap = cfg["learner_max_length"]
            l_len = min(float(pool.mean()), l_cap)
            updates = cfg["outer_loops"] * cfg["inner_loops"]
            real = learner.forward_flops(cfg["real_batch"] * cfg["real_accum"] * l_len, l_len)
            syn_len = sample_len(cfg["gen_batch_size"])
            syn = (3 * gen.forward_flops(cfg["syn_batch"] * syn_len, syn_len, True)
                   + learner.forward_flops(cfg["syn_batch"] * min(syn_len, l_cap), min(syn_len, l_cap)))
            lb = cfg["learner_batch_size"]
            l_pad = expected_batch_max(pool, lb, l_cap)
            trajectory = (cfg["outer_loops"] * (cfg["inner_loops"] - 1) * cfg["learner_steps"]
                          * 3 * learner.forward_flops(lb * l_pad, l_pad))
            n_pools = -(-cfg["outer_loops"] // cfg["gen_interval"])
            pool_n = cfg["pool_batches"] * cfg["syn_batch"]
            gen_f, g_len, moved, dec_steps = sampling(pool_n, cfg["gen_batch_size"])
            pools = n_pools * C * (gen_f + learner.forward_flops(pool_n * min(g_len, l_cap), min(g_len, l_cap)))
            real_len = expected_batch_max(pool, cfg["real_batch"], l_cap)
            mem = max(gen.train_bytes(cfg["syn_batch"], int(syn_len), lm_head=True, act_scale=act)
                      + learner.params * 4 + learner.infer_bytes(cfg["real_batch"], int(real_len), cctx.weight_bytes),
                      learner.train_bytes(lb, int(l_pad), act_scale=act) + gen.params * 16)
            stages.append(StageCost("stage 2: gradient matching", updates * C * (real + syn) + trajectory + pools, mem,
                                    per="task", bytes_moved=n_pools * C * moved,
                                    # per update and class: the real gradient, the generator's losses and backward,
                                    # the synthetic gradient; the trajectory's steps; every pool's decoding steps
                                    steps=updates * C * 3 + cfg["outer_loops"] * (cfg["inner_loops"] - 1)
                                    * cfg["learner_steps"] + n_pools * C * dec_steps,
                                    note=f"{updates:,} updates, {n_pools} sample pools of {pool_n:,} per class"))
        n = dpc * cfg["sample_factor"]
        gen_f, g_len, moved, dec_steps = sampling(n, cfg["gen_batch_size"])
        kept = n * (cfg["class_filter"] or 1.0)
        # the class filter scores every candidate under each of the C classes
        extra = (C * C * gen.forward_flops(n * g_len, g_len, True) if cfg["class_filter"] is not None else 0.0)
        stages.append(StageCost(f"stage 3: sample + select (DPC {dpc})",
                                C * (gen_f + enc.forward_flops(kept * g_len, g_len)) + extra,
                                gen.infer_bytes(cfg["gen_batch_size"], int(g_len), cctx.weight_bytes, kv_cache=True),
                                per="set", bytes_moved=C * moved, steps=C * dec_steps))
        return stages

    def filter_by_class(self, cand: list, label: int, dpc: int, share: float, device) -> list:
        """The ``share`` of candidates (at least dpc) with the largest class margin under the generator itself."""
        if not 0 < share <= 1:
            raise DilmbenchError(f"class_filter must be a share in (0, 1], got {share}")
        margins = self._gen.class_margins(cand, label, device)
        keep = max(dpc, int(np.ceil(share * len(cand))))
        order = np.argsort(-margins, kind="stable")[:keep]
        return [cand[i] for i in sorted(order)]


class DiLMVanillaMethod(DiLMMethod):
    """DiLM's "Vanilla LM" ablation: the generator after LM training only (no gradient matching), same selection."""

    use_gradient_matching = False
