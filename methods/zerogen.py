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
- the prompts are methods/synthesis.py's PROMPTS (shared with s3 and gold);
- ``quick`` uses SmolLM2-135M-Instruct instead of gpt2-xl (not obtainable offline; a 1.5B model on 2 CPU cores is
  too slow for a grid).
Generation goes through the core's interface (dilmbench.generation): seeded per sample, cached on disk, so a
rerun, another set index's shared samples, or another DPC reuses what was written. Each set records its cost.
"""
from __future__ import annotations

from dilmbench.api import MethodContext
from dilmbench.seeds import derive_seed

from .synthesis import SynthesisMethod


class ZeroGenMethod(SynthesisMethod):
    """ZeroGen: an LM writes texts zero-shot from label-descriptive prompts; DPC per class kept from the pool."""

    def write_pool(self, ctx: MethodContext, gen, spec: dict, dpc: int, base: int) -> dict[int, list]:
        n = dpc * self.config["pool_factor"]
        return {c: self.write(ctx, gen, spec, c, n, derive_seed(base, "class", c)) for c in range(ctx.task.num_labels)}
