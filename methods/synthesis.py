"""What the LLM data-synthesis methods (zerogen, s3, gold) share: per-task prompts, contexts, a pool per class, and
keeping DPC of it. Generation itself is the core's (dilmbench.generation); the small model S3 and GOLD train is the
core's fine-tuning recipe (dilmbench.finetune.fit_small_model).

Prompts follow ZeroGen's task files (jiacheng-ye/ZeroGen, tasks/*/…-x2.json): a label-descriptive prompt that ends
with an opening quote, the text ending at the closing quote. ``{c}`` is a context: a generated movie name (SST-2, the
reference's x1 stage) or a real first text of the pool (pair tasks, the reference's "gold x1"). ``demo`` writes a
text of the class as a demonstration (S3's errors, GOLD's out-of-distribution samples) before the query.
"""
from __future__ import annotations

import numpy as np

from dilmbench.api import Method, MethodContext
from dilmbench.cluster import k_centers
from dilmbench.errors import DilmbenchError
from dilmbench.seeds import derive_seed
from dilmbench.textset import TextSet

PROMPTS = {
    "sst2": {"context": "generate", "context_prompt": 'Movie: "',
             "labels": ['The movie review in negative sentiment for movie "{c}" is: "',
                        'The movie review in positive sentiment for movie "{c}" is: "'],
             "demo": ['The movie review in negative sentiment is: "{t0}"\n\n',
                      'The movie review in positive sentiment is: "{t0}"\n\n']},
    "mnli": {"context": "pool",
             "labels": ['"{c}"\nBased on the above description, the following sentence is definitely correct: "',
                        '"{c}"\nBased on the above description, the following sentence might be correct: "',
                        '"{c}"\nBased on the above description, the following sentence is definitely wrong: "'],
             "demo": ['"{t0}"\nBased on the above description, the following sentence is definitely correct: "{t1}"\n\n',
                      '"{t0}"\nBased on the above description, the following sentence might be correct: "{t1}"\n\n',
                      '"{t0}"\nBased on the above description, the following sentence is definitely wrong: "{t1}"\n\n']},
    "qqp": {"context": "pool",
            "labels": ['"{c}"\nA question that asks something different from the question above: "',
                       '"{c}"\nA question that asks the same thing as the question above: "'],
            "demo": ['"{t0}"\nA question that asks something different from the question above: "{t1}"\n\n',
                     '"{t0}"\nA question that asks the same thing as the question above: "{t1}"\n\n']},
}

SHARED_CONFIG = {
    "generator": "gpt2-xl", "backend": "auto", "batch_size": 32,
    # ZeroGen's sampling: top-p 0.9, no top-k, 10 to 40 new tokens; contexts at most 10 tokens
    "top_p": 0.9, "top_k": 0, "temperature": 1.0, "min_new_tokens": 10, "max_new_tokens": 40,
    "context_max_new_tokens": 10,
    "pool_factor": 10,  # synthetic texts per class = DPC x this
    "keep": "kcenters",  # random | kcenters: how DPC are kept from the pool
    "prompts": None,  # {task: {"context": "generate"|"pool", "context_prompt", "labels": [...], "demo": [...]}}
    "seed": 0,  # the pool depends on this and the set index, not on DPC (another DPC reuses the generated texts)
}
# quick: SmolLM2-135M-Instruct. Against gemma-3-270m on ZeroGen's SST-2 prompts (results/benchmarks/probes/synthesis_generators.py,
# results/benchmarks/synthesis_generators.txt): judge agreement 65.0% vs 67.5% on 40 texts (a tie at that size), 36
# vs 12 tokens/s on 2 cores, so the faster one.
QUICK = {"generator": "HuggingFaceTB/SmolLM2-135M-Instruct", "batch_size": 16}


class SynthesisMethod(Method):
    """Base of the LLM-synthesis methods: ``write_pool`` returns each class's synthetic rows; DPC are kept."""

    needs_embeddings = True  # keep "kcenters" embeds the pool with the run's encoder
    writes_texts = True
    default_config = dict(SHARED_CONFIG)
    presets = {"quick": dict(QUICK)}

    def required_models(self, ctx_encoder: str) -> list[str]:
        return [ctx_encoder, self.config["generator"], *self.extra_models()]

    def extra_models(self) -> list[str]:
        return []

    # ---- prompts ----------------------------------------------------------------------------------------------
    def prompts(self, task) -> dict:
        spec = (self.config["prompts"] or {}).get(task.name) or PROMPTS.get(task.name)
        if spec is None:
            raise DilmbenchError(f"{self.name} has no prompts for task '{task.name}': give them in method_options "
                                 f"{self.name}.prompts.{task.name} (context, labels, demo)")
        if len(spec["labels"]) != task.num_labels or spec.get("context") not in ("generate", "pool"):
            raise DilmbenchError(f"{self.name} prompts for '{task.name}' need context 'generate' or 'pool' and "
                                 f"{task.num_labels} label prompts")
        if (spec["context"] == "pool") != task.is_pair:
            raise DilmbenchError(f"{self.name} prompts for '{task.name}': a pair task takes its context from the pool "
                                 "(context: pool), a single-text task generates it")
        return spec

    @staticmethod
    def demo(spec: dict, c: int, row: tuple[str, ...]) -> str:
        return spec["demo"][c].format(**{f"t{i}": t for i, t in enumerate(row)})

    def sampling(self):
        from dilmbench.generation import Sampling

        cfg = self.config
        return Sampling(max_new_tokens=cfg["max_new_tokens"], min_new_tokens=cfg["min_new_tokens"],
                        temperature=cfg["temperature"], top_p=cfg["top_p"], top_k=cfg["top_k"], stop=('"',))

    def generator(self, ctx: MethodContext):
        from dilmbench.generation import TextGenerator

        cfg = self.config
        return TextGenerator(cfg["generator"], cache_dir=ctx.cache_dir, device=ctx.device, backend=cfg["backend"],
                             batch_size=cfg["batch_size"])

    def contexts(self, ctx, gen, spec, c: int, n: int, seed: int) -> list[str]:
        """n contexts for class c: real first texts of the pool, or generated ones (ZeroGen's x1 stage)."""
        from dilmbench.generation import Sampling

        if spec["context"] == "pool":
            firsts = ctx.data.texts("pool")
            rng = np.random.default_rng(seed)
            return [firsts[i][0] for i in rng.choice(len(firsts), size=n, replace=len(firsts) < n)]
        cfg = self.config
        s = Sampling(max_new_tokens=cfg["context_max_new_tokens"], top_p=cfg["top_p"], top_k=cfg["top_k"],
                     temperature=cfg["temperature"], stop=('"',))
        out, k = [], 0  # one prompt, sample indices 0, 1, ...; an empty context is replaced by a later index
        while len(out) < n and k < 4 * n:
            got = gen.generate([spec["context_prompt"]], s, seed=seed, n=k + (n - len(out)))[0][k:]
            k += len(got)
            out.extend(g.strip() for g in got if g.strip())
        if len(out) < n:
            raise DilmbenchError(f"{self.name}: {cfg['generator']} wrote too few non-empty contexts ({len(out)} of {n})")
        return out[:n]

    def write(self, ctx, gen, spec, c: int, n: int, seed: int, demos: str = "") -> list[tuple[str, ...]]:
        """n rows of class c (fewer after dropping empty texts): demos, then the label prompt on a fresh context."""
        contexts = self.contexts(ctx, gen, spec, c, n, derive_seed(seed, "context"))
        prompts = [demos + spec["labels"][c].format(c=x) for x in contexts]
        texts = [w[0].strip() for w in gen.generate(prompts, self.sampling(), seed=derive_seed(seed, "text"))]
        return [((x, t) if ctx.task.is_pair else (t,)) for x, t in zip(contexts, texts) if t]

    # ---- the set ----------------------------------------------------------------------------------------------
    def write_pool(self, ctx: MethodContext, gen, spec: dict, dpc: int, base: int) -> dict[int, list]:
        raise NotImplementedError

    def make_set(self, ctx: MethodContext, dpc: int, seed: int, set_index: int) -> TextSet:
        task = ctx.task
        spec = self.prompts(task)
        gen = self.generator(ctx)
        base = derive_seed(self.config["seed"], task.name, self.name, set_index)
        pools = self.write_pool(ctx, gen, spec, dpc, base)
        texts, labels, extra = [], [], getattr(self, "_provenance", {})
        for c in range(task.num_labels):
            pool = list(dict.fromkeys(pools[c]))  # distinct, in order
            if len(pool) < dpc:
                raise DilmbenchError(f"{self.name}: {self.config['generator']} wrote only {len(pool)} usable distinct "
                                     f"texts for class '{task.label_names[c]}' (DPC {dpc}); raise pool_factor")
            keep = self.keep(ctx, pool, dpc, derive_seed(seed, "keep", c))
            texts.extend(pool[i] for i in keep)
            labels.extend([c] * dpc)
        return TextSet(task=task.name, text_fields=task.text_fields, texts=texts, labels=labels,
                       provenance={"method": self.name, "config": self.config, "seed": seed, "dpc": dpc,
                                   "source": "generated", "generator": self.config["generator"],
                                   "generator_revision": gen.revision, "backend": gen.backend, "prompts": spec,
                                   "pool_sizes": [len(set(pools[c])) for c in range(task.num_labels)],
                                   "cost": dict(gen.cost), **extra})

    def keep(self, ctx, pool: list, dpc: int, seed: int):
        if self.config["keep"] == "random":
            return np.random.default_rng(seed).choice(len(pool), size=dpc, replace=False)
        if self.config["keep"] != "kcenters":
            raise DilmbenchError(f"{self.name} keep must be random or kcenters, got '{self.config['keep']}'")
        from dilmbench.embed import embed_texts

        return k_centers(embed_texts(pool, ctx.encoder, ctx.pooling, ctx.device, ctx.embed_dtype), dpc, seed=seed)
