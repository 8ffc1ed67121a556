"""zerogen: ZeroGen (Ye et al., EMNLP 2022, arXiv 2202.07922; reference code jiacheng-ye/ZeroGen): a language model
writes labeled texts zero-shot from label-descriptive prompts; DPC per class are kept from a synthetic pool.

The reference's recipe, as its task files and scripts set it:
- single-text tasks (SST-2): first a context, a movie name, from ``Movie: "`` (at most 10 tokens, up to the closing
  quote); then per label ``The movie review in <positive|negative> sentiment for movie "<name>" is: "``, sampled with
  top-p 0.9, top-k off, 10 to 40 new tokens, the text ending at the closing quote;
- pair tasks: the first text is a real one from the train split ("gold x1", as the reference does for RTE / QNLI);
  the second is written under the label's description, ``"<first>"\\nBased on the above description, the following
  sentence is definitely correct: "`` (entailment) / ``definitely wrong`` (contradiction).

Deviations (each a config value; the reference generates ~200k texts per task and trains on all of them):
- the pool is DPC x ``pool_factor`` texts per class, and DPC are kept from it (``keep``: random, or the suite's
  k-centers on encoder embeddings); the reference has no selection step, since it never had a DPC budget;
- MNLI's neutral ("might be correct") and QQP's two prompts are ours: the reference has no 3-way NLI or paraphrase
  task file; its self-debiasing for NLI (decay constant 200) is not implemented;
- texts are de-duplicated within a class and a text that is empty after the closing quote is dropped;
- ``quick`` uses SmolLM2-135M-Instruct instead of gpt2-xl (not obtainable offline; a 1.5B model on 2 CPU cores is
  too slow for a grid).
Generation goes through the core's interface (dilmbench.generation): seeded per sample, cached on disk, so a
rerun, another set index's shared samples, or another DPC reuses what was written. Each set records its cost.
"""
from __future__ import annotations

import numpy as np

from dilmbench.api import Method, MethodContext
from dilmbench.cluster import k_centers
from dilmbench.errors import DilmbenchError
from dilmbench.seeds import derive_seed
from dilmbench.textset import TextSet

# per task: how a context is made ("generate": from context_prompt; "pool": a real first text) and one prompt per
# label in the task's label order ({c}: the context)
PROMPTS = {
    "sst2": {"context": "generate", "context_prompt": 'Movie: "',
             "labels": ['The movie review in negative sentiment for movie "{c}" is: "',
                        'The movie review in positive sentiment for movie "{c}" is: "']},
    "mnli": {"context": "pool",
             "labels": ['"{c}"\nBased on the above description, the following sentence is definitely correct: "',
                        '"{c}"\nBased on the above description, the following sentence might be correct: "',
                        '"{c}"\nBased on the above description, the following sentence is definitely wrong: "']},
    "qqp": {"context": "pool",
            "labels": ['"{c}"\nA question that asks something different from the question above: "',
                       '"{c}"\nA question that asks the same thing as the question above: "']},
}


class ZeroGenMethod(Method):
    """ZeroGen: an LM writes texts zero-shot from label-descriptive prompts; DPC per class kept from the pool."""

    needs_embeddings = True  # keep "kcenters" embeds the synthetic pool with the run's encoder
    default_config = {
        "generator": "gpt2-xl", "backend": "auto", "batch_size": 32,
        "top_p": 0.9, "top_k": 0, "temperature": 1.0, "min_new_tokens": 10, "max_new_tokens": 40,
        "context_max_new_tokens": 10,
        "pool_factor": 10,  # synthetic texts per class = DPC x this
        "keep": "kcenters",  # random | kcenters
        "prompts": None,  # {task: {"context": "generate"|"pool", "context_prompt": ..., "labels": [...]}}
        "seed": 0,  # the pool's samples depend on this and the set index, not on DPC (another DPC reuses them)
    }
    presets = {"quick": {"generator": "HuggingFaceTB/SmolLM2-135M-Instruct", "batch_size": 16}}

    def required_models(self, ctx_encoder: str) -> list[str]:
        return [ctx_encoder, self.config["generator"]] if self.config["keep"] == "kcenters" else [self.config["generator"]]

    def prompts(self, task) -> dict:
        spec = (self.config["prompts"] or {}).get(task.name) or PROMPTS.get(task.name)
        if spec is None:
            raise DilmbenchError(f"zerogen has no prompts for task '{task.name}': give them in method_options "
                                 f"zerogen.prompts.{task.name} (context, labels)")
        if len(spec["labels"]) != task.num_labels or spec.get("context") not in ("generate", "pool"):
            raise DilmbenchError(f"zerogen prompts for '{task.name}' need context 'generate' or 'pool' and "
                                 f"{task.num_labels} label prompts")
        if (spec["context"] == "pool") != task.is_pair:
            raise DilmbenchError(f"zerogen prompts for '{task.name}': a pair task takes its context from the pool "
                                 "(context: pool), a single-text task generates it")
        return spec

    def make_set(self, ctx: MethodContext, dpc: int, seed: int, set_index: int) -> TextSet:
        from dilmbench.generation import Sampling, TextGenerator

        cfg, task = self.config, ctx.task
        spec = self.prompts(task)
        gen = TextGenerator(cfg["generator"], cache_dir=ctx.cache_dir, device=ctx.device, backend=cfg["backend"],
                            batch_size=cfg["batch_size"])
        n = dpc * cfg["pool_factor"]
        base = derive_seed(cfg["seed"], task.name, "zerogen", set_index)
        body = Sampling(max_new_tokens=cfg["max_new_tokens"], min_new_tokens=cfg["min_new_tokens"],
                        temperature=cfg["temperature"], top_p=cfg["top_p"], top_k=cfg["top_k"], stop=('"',))
        texts, labels = [], []
        for c in range(task.num_labels):
            contexts = self._contexts(ctx, gen, spec, c, n, derive_seed(base, "context", c))
            prompts = [spec["labels"][c].format(c=x) for x in contexts]
            written = [w[0].strip() for w in gen.generate(prompts, body, seed=derive_seed(base, "text", c))]
            seen, pool = set(), []
            for x, w in zip(contexts, written):
                row = (x, w) if task.is_pair else (w,)
                if w and row not in seen:
                    seen.add(row)
                    pool.append(row)
            if len(pool) < dpc:
                raise DilmbenchError(f"zerogen: {cfg['generator']} wrote only {len(pool)} usable distinct texts for "
                                     f"class '{task.label_names[c]}' of {n} prompts (DPC {dpc}); raise pool_factor")
            keep = self._keep(ctx, pool, dpc, derive_seed(seed, "keep", c))
            texts.extend(pool[i] for i in keep)
            labels.extend([c] * dpc)
        return TextSet(task=task.name, text_fields=task.text_fields, texts=texts, labels=labels,
                       provenance={"method": self.name, "config": cfg, "seed": seed, "dpc": dpc, "source": "generated",
                                   "generator": cfg["generator"], "generator_revision": gen.revision,
                                   "backend": gen.backend, "prompts": spec, "cost": dict(gen.cost)})

    def _contexts(self, ctx, gen, spec, c: int, n: int, seed: int) -> list[str]:
        """n contexts for class c: real first texts of the pool, or generated ones (the reference's x1 stage)."""
        from dilmbench.generation import Sampling

        if spec["context"] == "pool":
            firsts = ctx.data.texts("pool")
            rng = np.random.default_rng(seed)
            return [firsts[i][0] for i in rng.choice(len(firsts), size=n, replace=len(firsts) < n)]
        s = Sampling(max_new_tokens=self.config["context_max_new_tokens"], top_p=self.config["top_p"],
                     top_k=self.config["top_k"], temperature=self.config["temperature"], stop=('"',))
        # one prompt, n samples; an empty context is asked for again with later sample indices
        out, k = [], 0
        while len(out) < n and k < 4 * n:
            got = gen.generate([spec["context_prompt"]], s, seed=seed, n=k + (n - len(out)))[0][k:]
            k += len(got)
            out.extend(g.strip() for g in got if g.strip())
        if len(out) < n:
            raise DilmbenchError(f"zerogen: {self.config['generator']} wrote too few non-empty contexts ({len(out)} of {n})")
        return out[:n]

    def _keep(self, ctx, pool: list, dpc: int, seed: int):
        if self.config["keep"] == "random":
            return np.random.default_rng(seed).choice(len(pool), size=dpc, replace=False)
        if self.config["keep"] != "kcenters":
            raise DilmbenchError(f"zerogen keep must be random or kcenters, got '{self.config['keep']}'")
        from transformers import AutoModel

        from dilmbench.embed import encode
        from dilmbench.models import load_pretrained, load_tokenizer

        tok = load_tokenizer(ctx.encoder)
        enc = load_pretrained(AutoModel, ctx.encoder).to(ctx.device)
        emb = encode(pool, enc, tok, pooling=ctx.pooling, device=ctx.device)
        return k_centers(emb, dpc, seed=seed)
