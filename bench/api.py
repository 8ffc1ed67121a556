"""The plugin interface: what a method and an evaluator implement, and the contexts the runner gives them.

A method::

    from dilmbench.api import SelectionMethod
    from dilmbench.registry import register_method

    @register_method("my_method")
    class MyMethod(SelectionMethod):
        '''One line shown by `dilmbench ls`.'''
        needs_embeddings = True
        def select(self, embeddings, k, rng):      # one class's pool embeddings -> k row indices
            return rng.choice(len(embeddings), k, replace=False)

Methods that write texts (DiLM) subclass :class:`Method` and implement ``make_set``; ``prepare`` runs once per task
before any set is made (train a generator, build a pool).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from .errors import DilmbenchError
from .tasks import Task, TaskData
from .textset import TextSet


@dataclass
class MethodContext:
    data: TaskData
    encoder: str
    pooling: str
    device: str
    cache_dir: Path
    progress: bool = True
    embed_dtype: str = "float32"  # the encoder pass's precision (dilmbench.embed)
    _emb: dict = field(default_factory=dict, repr=False)

    @property
    def task(self) -> Task:
        return self.data.task

    def embed_identity(self) -> dict:
        """What the encoder pass adds to an identity beyond encoder and pooling: its dtype, unless float32 (the
        precision of every result made before the option existed): the runner's rule, dilmbench.config.embed_identity."""
        from .config import embed_identity

        return embed_identity({"embed_dtype": self.embed_dtype})

    def pool_embeddings(self) -> np.ndarray:
        """Encoder embeddings of the pool (train minus dev), computed once and cached on disk."""
        from .embed import cached_embeddings

        key = (self.encoder, self.pooling, self.embed_dtype)
        if key not in self._emb:
            self._emb[key] = cached_embeddings(self.data.texts("pool"), self.encoder, self.pooling, device=self.device,
                                               cache_dir=self.cache_dir, progress=self.progress, dtype=self.embed_dtype)
        return self._emb[key]


def identity_config(config: dict, later_defaults: dict) -> dict:
    """A plugin's config as it enters a result's identity: an option added after results existed (``later_defaults``:
    name -> the value that behaves as before it existed) is left out while it holds that value, so finished results
    stay valid; set to anything else, it joins the identity."""
    return {k: v for k, v in config.items() if not (k in later_defaults and v == later_defaults[k])}


def code_identity(cls) -> dict:
    """What of a plugin's code joins its results' identity: its declared ``version`` (bump it when a change alters
    results) and, for a class loaded from a ``--plugin`` file, the file's sha256 (any edit redoes its runs)."""
    out = {}
    if getattr(cls, "version", None) is not None:
        out["version"] = cls.version
    if getattr(cls, "source_sha256", None) is not None:
        out["source_sha256"] = cls.source_sha256
    return out


class Method:
    """Base of every method. ``config`` holds the method's own settings (recorded in every result)."""

    name: ClassVar[str] = ""
    default_config: ClassVar[dict] = {}
    needs_embeddings: ClassVar[bool] = False
    models: ClassVar[tuple] = ()  # extra model config keys to check before a run starts
    # the method's own values per preset (e.g. {"quick": {...}}), merged under the user's options by the runner: a
    # preset names the scale, the method knows what that scale means for it
    presets: ClassVar[dict] = {}
    version: ClassVar[str | None] = None  # bump when a code change alters what the method returns
    argument: ClassVar[str | None] = None  # the option that 'name:ARG' on the command line sets (file: "path")
    gives_sets: ClassVar[bool] = False  # its sets come from fixed_sets() (made elsewhere), not per DPC
    # a given set's DPC is its largest class, found only once it is read; a method whose set stands for every DPC
    # (the full-data ceiling) names the DPC its runs are filed under instead (0: all), so a declaration can list them
    fixed_dpc: ClassVar[int | None] = None
    # its sets are written by a generator model (costly, and not bit-for-bit repeatable across machines):
    # `dilmbench reproduce` re-evaluates the folder's sets of such a method instead of writing them again
    writes_texts: ClassVar[bool] = False
    later_defaults: ClassVar[dict] = {}  # options added later -> their old behaviour's value (see identity_config)

    def __init__(self, **config):
        unknown = set(config) - set(self.default_config)
        if unknown:
            raise DilmbenchError(f"method '{self.name}' has no option(s) {sorted(unknown)}; options: {sorted(self.default_config)}")
        self.config = {**self.default_config, **config}

    @classmethod
    def for_preset(cls, preset: str | None, **options) -> "Method":
        """The method with its own values for ``preset`` (if it has any), then ``options`` on top."""
        return cls(**{**cls.presets.get(preset, {}), **options})

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def required_models(self, ctx_encoder: str) -> list[str]:
        return [ctx_encoder] if self.needs_embeddings else []

    def prepare(self, ctx: MethodContext) -> None:
        """Once per task, before any set."""

    def make_set(self, ctx: MethodContext, dpc: int, seed: int, set_index: int) -> TextSet:
        raise NotImplementedError

    def fixed_sets(self, task: Task, data: TaskData | None = None) -> list[TextSet] | None:
        """Methods whose sets are given (not made per DPC and seed) return them here; the runner passes the task's
        loaded data to a method whose fixed_sets takes ``data`` (the full-data ceiling is the pool itself)."""
        return None

    def estimate_cost(self, cctx, dpc: int) -> list | None:
        """What making one set of this DPC costs (`run --dry-run`): dilmbench.cost.StageCost entries, per "set", or
        per "task" for work done once for every set of the task (a trained generator, the pool's embeddings: the
        dry run counts a task stage once by its name); [] for nothing worth counting; None when the method does not
        say (shown as "not estimated")."""
        return None

    def identity(self) -> dict:
        return {"method": self.name, "config": identity_config(self.config, self.later_defaults), **code_identity(type(self))}

    def task_identity(self, task: Task) -> dict:
        """What joins a set's identity on this task only (settings the method applies per task, e.g. a pair task's
        own lengths); {} for most methods. Kept apart from identity() so that other tasks' results stay valid."""
        return {}


def textset_from_pool(ctx: MethodContext, indices, method: str, config: dict, seed: int, dpc: int) -> TextSet:
    indices = [int(i) for i in indices]
    texts = ctx.data.texts("pool")
    labels = ctx.data.labels("pool")
    pool_idx = ctx.data.column("pool", "idx")
    return TextSet(task=ctx.task.name, text_fields=ctx.task.text_fields,
                   texts=[texts[i] for i in indices], labels=[int(labels[i]) for i in indices],
                   source_indices=[int(pool_idx[i]) for i in indices] if pool_idx is not None else indices,
                   provenance={"method": method, "config": config, "seed": seed, "dpc": dpc,
                               "source": "selected", "source_split": ctx.task.train_split,
                               "source_index_field": "idx" if pool_idx is not None else "pool_row"})


class SelectionMethod(Method):
    """Coreset selection per class: implement ``select(embeddings, k, rng) -> k row indices``.

    ``embeddings`` are the class's pool embeddings (or None when ``needs_embeddings`` is False, in which case the
    argument is the class size as an int). Returned indices are rows of that class's block.
    """

    def select(self, embeddings, k: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def make_set(self, ctx: MethodContext, dpc: int, seed: int, set_index: int) -> TextSet:
        labels = ctx.data.labels("pool")
        emb = ctx.pool_embeddings() if self.needs_embeddings else None
        chosen = []
        for c in range(ctx.task.num_labels):
            rows = np.flatnonzero(labels == c)
            if len(rows) < dpc:
                raise DilmbenchError(f"DPC {dpc} is larger than class '{ctx.task.label_names[c]}' of {ctx.task.name} ({len(rows)} examples)")
            rng = np.random.default_rng([seed, c])
            picked = np.asarray(self.select(emb[rows] if emb is not None else len(rows), dpc, rng))
            if len(picked) != dpc or len(set(picked.tolist())) != dpc:
                raise DilmbenchError(f"method '{self.name}' returned {len(set(picked.tolist()))} distinct rows for class {c}, expected {dpc}")
            chosen.extend(rows[picked].tolist())
        cfg = {**self.config, **({"encoder": ctx.encoder, "pooling": ctx.pooling, **ctx.embed_identity()}
                                 if self.needs_embeddings else {})}
        return textset_from_pool(ctx, chosen, self.name, cfg, seed, dpc)

    def estimate_cost(self, cctx, dpc: int) -> list | None:
        """The pool's embedding pass (once per task, cached) when the method reads embeddings; selection itself is
        not counted (k-means / greedy passes over a few thousand vectors: seconds)."""
        from .cost import StageCost, model_shape

        if not self.needs_embeddings:
            return []
        shape = model_shape(cctx.encoder) if cctx.encoder else None
        if shape is None:
            return None
        mean = float(cctx.pool_lengths.mean()) if len(cctx.pool_lengths) else 0.0
        tokens = cctx.pool_size * mean
        return [StageCost(f"embed pool ({cctx.encoder})", shape.forward_flops(tokens, mean),
                          shape.infer_bytes(256, int(cctx.pool_lengths.max(initial=1))), per="task",
                          steps=-(-cctx.pool_size // 256))]


@dataclass
class EvalContext:
    data: TaskData
    device: str
    cache_dir: Path
    progress: bool = True
    # the split scores are taken on: "eval" (the task's evaluation split, for reported numbers) or "dev" (carved
    # from train, for choosing anything: hyperparameters, checkpoints, counts)
    split: str = "eval"

    @property
    def task(self) -> Task:
        return self.data.task


class Evaluator:
    """Scores a text set. ``learners()`` lists the models the grid iterates over; ``evaluate`` returns a dict with at
    least ``score`` (the headline number) and the task's metrics, plus anything worth recording."""

    name: ClassVar[str] = ""
    default_config: ClassVar[dict] = {}
    version: ClassVar[str | None] = None  # bump when a code change alters scores
    presets: ClassVar[dict] = {}  # the evaluator's own values per preset, merged under the user's options
    later_defaults: ClassVar[dict] = {}  # options added later -> their old behaviour's value (see identity_config)

    @classmethod
    def for_preset(cls, preset: str | None, **options) -> "Evaluator":
        return cls(**{**cls.presets.get(preset, {}), **options})

    def __init__(self, **config):
        unknown = set(config) - set(self.default_config)
        if unknown:
            raise DilmbenchError(f"evaluator '{self.name}' has no option(s) {sorted(unknown)}; options: {sorted(self.default_config)}")
        self.config = {**self.default_config, **config}

    @classmethod
    def describe(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def learners(self) -> list[str]:
        raise NotImplementedError

    def required_models(self) -> list[str]:
        """Hugging Face model ids checked before anything runs (default: the learners). An evaluator whose learners
        are not hub models (a TF-IDF classifier, an API) returns []."""
        return list(self.learners())

    def evaluate(self, ctx: EvalContext, textset: TextSet, learner: str, seed: int) -> dict:
        raise NotImplementedError

    def evaluate_many(self, ctx: EvalContext, jobs: list[tuple[TextSet, str, int]]) -> list[dict]:
        """Several runs (textset, learner, seed) at once, for the runner's ``--batch-runs``: one result per job, in
        order, each what ``evaluate`` gives it (within the evaluator's stated tolerance). The default runs them one
        after another; an evaluator that can train runs together (finetune's batched path) overrides it."""
        return [self.evaluate(ctx, *job) for job in jobs]

    def expected_unfit(self, cctx, set_size: int, learner: str) -> str | None:
        """Why a run on a set of ``set_size`` texts would not fit ``learner`` (an ICL prompt longer than its context),
        judged before launch from the task's typical lengths (a dilmbench.cost.CostContext); None when it would fit,
        or when the evaluator does not say. `run` warns with it before starting and `run --dry-run` lists it;
        ``check_fits`` decides run by run."""
        return None

    def check_fits(self, ctx: EvalContext, textset: TextSet, learner: str, seed: int) -> str | None:
        """Why this run cannot be made with this very set (its prompt is longer than the learner's context), asked by
        the driver once the set is made and before the run is handed out; None when it can. The runner skips such a
        run, goes on with the rest of the grid and lists it at the end, instead of stopping partway."""
        return None

    def estimate_cost(self, cctx, set_size: int, learner: str) -> list | None:
        """What one run costs (`run --dry-run`): a list of dilmbench.cost.StageCost (per "run"), or None when the
        evaluator does not say (shown as "not estimated")."""
        return None

    def identity(self) -> dict:
        return {"evaluator": self.name, "config": identity_config(self.config, self.later_defaults),
                **code_identity(type(self))}

    def learner_identity(self, learner: str) -> dict:
        """What joins the identity of this evaluator's runs with ``learner`` only (a code path whose version differs
        by learner: finetune's fast path); {} for most evaluators, and then nothing is added. Kept apart from
        identity() so that a change that alters one learner's numbers leaves the others' results valid."""
        return {}

    def learner_identity_known(self, learner: str) -> bool:
        """Whether learner_identity(learner) is what a run would record, as far as this machine can tell without the
        model (finetune's reads the learner's config; where it is not here, validate leaves that part to --deep)."""
        return True

    def close(self) -> None:
        """Release what evaluate() kept across runs (models, engines and their worker processes); the runner calls
        it when the grid is done."""
