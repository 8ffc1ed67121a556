"""finetune: DiLM's evaluation protocol — fine-tune a fresh learner on the set, score it on the evaluation split."""
import math
import time

import numpy as np

from dilmbench.api import EvalContext, Evaluator
from dilmbench.batching import tokenize
from dilmbench.finetune import FinetuneRecipe, learner_tokenizer, load_classifier, predict_logits, train_classifier
from dilmbench.models import QUICK_MODEL


class FinetuneEvaluator(Evaluator):
    """Fine-tune a pretrained learner with a fresh head (200 steps, AdamW 1e-4, cosine, warmup 0.5) and score it."""

    default_config = {"learners": ["bert-base-uncased", "roberta-base", "xlnet-base-cased"],
                      **FinetuneRecipe().to_dict()}
    # the paper's learners and the reference path; the CPU preset fine-tunes MiniLM on the fast path
    # (dilmbench.fastpath: same protocol, bf16, new dropout stream; results/benchmarks/finetune_roofline.txt)
    # The paper preset reads 512 tokens, as the reference does (its tokenizer's model_max_length for the set and the
    # evaluation split alike); the recipe's default of 128 (kept by the quick preset) covers SST-2 whole and cuts few
    # MNLI / QQP pairs (results/benchmarks/pair_lengths.txt).
    presets = {"quick": {"learners": [QUICK_MODEL], "fast": True}, "paper": {"max_length": 512}}
    # options added after results existed, at the value that behaves as before: off, finished results keep their identity
    later_defaults = {"cpu_bf16": False, "fast": False, "fast_version": 0}

    def __init__(self, **config):
        super().__init__(**config)
        self.recipe = FinetuneRecipe(**{k: v for k, v in self.config.items() if k != "learners"})
        self._tok: dict = {}
        self._eval_feats: dict = {}

    def learners(self) -> list[str]:
        return list(self.config["learners"])

    def learner_identity(self, learner: str) -> dict:
        """The fast path's version as it concerns this learner (dilmbench.recipe.fast_path_version), recorded from
        version 3 on: a fast-path run without it was made at version 2."""
        from dilmbench.recipe import FAST_PATH_UNRECORDED, fast_path_version

        if not self.config.get("fast"):
            return {}
        version = self.recipe.fast_path(fast_path_version(learner))
        return {"fast_path": version} if version > FAST_PATH_UNRECORDED else {}

    def learner_identity_known(self, learner: str) -> bool:
        from dilmbench.recipe import fast_path_version_known

        return not self.config.get("fast") or fast_path_version_known(learner)

    def identity(self) -> dict:
        ident = super().identity()
        ident["config"].pop("fast_version", None)  # in a run's identity as the version it gives (learner_identity)
        return ident

    def _tokenizer(self, learner: str):
        if learner not in self._tok:
            self._tok[learner] = learner_tokenizer(learner)
        return self._tok[learner]

    def _eval_features(self, ctx: EvalContext, learner: str):
        key = (learner, ctx.task.name, ctx.split, len(getattr(ctx.data, ctx.split)))
        if key not in self._eval_feats:
            self._eval_feats[key] = tokenize(self._tokenizer(learner), ctx.data.texts(ctx.split), self.recipe.max_length)
        return self._eval_feats[key]

    def evaluate(self, ctx: EvalContext, textset, learner: str, seed: int) -> dict:
        tok = self._tokenizer(learner)
        t0 = time.perf_counter()
        model = load_classifier(learner, ctx.task.num_labels, seed, ctx.device)
        t1 = time.perf_counter()
        losses = train_classifier(model, tok, textset.texts, textset.labels, self.recipe, seed, ctx.device,
                                  weights=textset.weights, progress=ctx.progress)
        t2 = time.perf_counter()
        return self._score(ctx, model, learner, textset, losses, {"load": t1 - t0, "train": t2 - t1})

    def evaluate_many(self, ctx: EvalContext, jobs) -> list[dict]:
        """Runs of one learner and one set size trained together on the fast path's batched path
        (dilmbench.batched: each run gets what it gets alone, within tests/test_batched.py's tolerance) when the recipe
        runs one padded batch per step (micro_batch_tokens 0, the CUDA default) and the learner can be grouped;
        otherwise one after another."""
        from dilmbench.batched import NotBatchable, train_classifiers_batched

        out: list = [None] * len(jobs)
        groups: dict = {}
        for i, (ts, learner, seed) in enumerate(jobs):
            groups.setdefault((learner, len(ts)), []).append(i)
        for (learner, _), idx in groups.items():
            if len(idx) > 1 and self.recipe.fast and self.recipe.micro_tokens(ctx.device) == 0:
                tok = self._tokenizer(learner)
                t0 = time.perf_counter()
                models = [load_classifier(learner, ctx.task.num_labels, jobs[i][2], ctx.device) for i in idx]
                t1 = time.perf_counter()
                try:
                    losses = train_classifiers_batched(
                        models, tok, [(jobs[i][0].texts, jobs[i][0].labels) for i in idx], self.recipe,
                        [jobs[i][2] for i in idx], ctx.device, weights=[jobs[i][0].weights for i in idx])
                except NotBatchable:
                    losses = None
                if losses is not None:
                    t2 = time.perf_counter()
                    share = {"load": (t1 - t0) / len(idx), "train": (t2 - t1) / len(idx)}
                    for i, model, run_losses in zip(idx, models, losses):
                        out[i] = {**self._score(ctx, model, learner, jobs[i][0], run_losses, share),
                                  "batched_runs": len(idx)}
                    continue
            for i in idx:
                out[i] = self.evaluate(ctx, *jobs[i])
        return out

    def estimate_cost(self, cctx, set_size: int, learner: str) -> list | None:
        """One run: `steps` training steps on batches of min(64, |set|) texts (one padded batch per step on CUDA or
        with micro_batch_tokens 0, else length-sorted micro-batches: about the unpadded tokens), then one pass over
        the evaluation split in length-sorted batches."""
        from dilmbench.cost import StageCost, expected_batch_max, model_shape

        shape = model_shape(learner)
        if shape is None:
            return None
        r = self.recipe
        lengths = np.minimum(cctx.text_lengths, r.max_length)
        batch = r.batch_size(set_size)
        longest = expected_batch_max(lengths, batch, r.max_length)
        padded = r.micro_tokens(cctx.device) == 0
        length = longest if padded else float(lengths.mean())
        train = r.steps * 3 * shape.forward_flops(batch * length, length)
        ev_len = np.minimum(cctx.eval_lengths, r.max_length)
        ev_mean = float(ev_len.mean()) if len(ev_len) else 0.0
        evaluate = shape.forward_flops(cctx.eval_size * ev_mean, ev_mean)
        return [StageCost("train", train, shape.train_bytes(batch, int(math.ceil(longest)), act_scale=cctx.act_scale),
                          per="run", steps=r.steps),
                StageCost("evaluate", evaluate, shape.infer_bytes(r.eval_batch_size, int(ev_len.max(initial=1)),
                                                                  cctx.weight_bytes), per="run",
                          steps=-(-cctx.eval_size // r.eval_batch_size))]

    def _score(self, ctx: EvalContext, model, learner: str, textset, losses, timing: dict) -> dict:
        tok = self._tokenizer(learner)
        t2 = time.perf_counter()
        logits = predict_logits(model, self._eval_features(ctx, learner), tok, self.recipe.eval_batch_size, ctx.device,
                                cpu_bf16=self.recipe.bf16)
        preds = logits.argmax(1)
        t3 = time.perf_counter()
        metrics = ctx.task.score(ctx.data.labels(ctx.split), preds)
        return {**metrics,
                "train_loss_first": losses[0], "train_loss_last": float(np.mean(losses[-10:])),
                "batch_size": self.recipe.batch_size(len(textset)),
                "eval_examples": len(preds),
                "timing_s": {**timing, "eval": t3 - t2}}
