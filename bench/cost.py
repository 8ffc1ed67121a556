"""What a grid will cost before it runs (`dilmbench run --dry-run`): FLOPs and peak memory per run and per method
stage, counted from each model's configuration and the recipe, and hours on a stated device.

The counts are the usual transformer estimates, stated so a reader can check them:
- a forward pass costs 2 x (non-embedding parameters) FLOPs per token, plus 4 x layers x width x length per token for
  attention (scores and weighted sum), plus 2 x vocabulary x width per token where a language-model head is applied;
  a training step is 3 forward passes (the backward pass is two);
- training memory is 16 bytes per parameter (float32 weights, gradients and AdamW's two moments) plus activations,
  layers x tokens x width x 34 bytes + 5 x heads x tokens x length bytes (Korthikanti et al., 2022, 16-bit
  activations, no recomputation) and the logits; inference memory is the weights in the run's dtype, one batch's
  activations and, when generating, the KV cache;
- token counts come from the task's own texts: ceil(1.3 x words) + the model's special tokens per text (an English
  wordpiece / BPE rate), padded to the expected longest text in a batch where a batch is padded as a whole.
Hours = FLOPs / (device FLOP/s x utilisation); the utilisation is an assumption the output prints.

Methods and evaluators say what their own stages cost through ``estimate_cost`` (see :class:`CostContext`); one that
does not is listed as "not estimated", never as free.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# The hub's config.json values of the models the paper preset names, so a dry run needs no download (a model found
# locally, or through $DILMBENCH_MODEL_MAP, is read from its own config instead). model_type + its config's fields.
KNOWN_CONFIGS: dict[str, dict] = {
    "bert-base-uncased": {"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                          "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
                          "type_vocab_size": 2},
    "bert-large-uncased": {"model_type": "bert", "vocab_size": 30522, "hidden_size": 1024, "num_hidden_layers": 24,
                           "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 512,
                           "type_vocab_size": 2},
    "roberta-base": {"model_type": "roberta", "vocab_size": 50265, "hidden_size": 768, "num_hidden_layers": 12,
                     "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 514,
                     "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0,
                     "eos_token_id": 2},
    "xlnet-base-cased": {"model_type": "xlnet", "vocab_size": 32000, "d_model": 768, "n_layer": 12, "n_head": 12,
                         "d_inner": 3072, "ff_activation": "gelu", "untie_r": True, "mem_len": None,
                         "pad_token_id": 5, "bos_token_id": 1, "eos_token_id": 2},
    "gpt2": {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12,
             "n_head": 12, "bos_token_id": 50256, "eos_token_id": 50256},
    "gpt2-xl": {"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 1600, "n_layer": 48,
                "n_head": 25, "bos_token_id": 50256, "eos_token_id": 50256},
    "facebook/opt-2.7b": {"model_type": "opt", "vocab_size": 50272, "hidden_size": 2560, "num_hidden_layers": 32,
                          "num_attention_heads": 32, "ffn_dim": 10240, "max_position_embeddings": 2048,
                          "word_embed_proj_dim": 2560, "do_layer_norm_before": True, "pad_token_id": 1,
                          "bos_token_id": 2, "eos_token_id": 2},
    "Qwen/Qwen2.5-14B-Instruct": {"model_type": "qwen2", "vocab_size": 152064, "hidden_size": 5120,
                                  "intermediate_size": 13824, "num_hidden_layers": 48, "num_attention_heads": 40,
                                  "num_key_value_heads": 8, "max_position_embeddings": 32768,
                                  "tie_word_embeddings": False},
    "meta-llama/Llama-2-7b-hf": {"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096,
                                 "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                                 "intermediate_size": 11008, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
                                 "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2},
}

TOKENS_PER_WORD = 1.3
GIB = 2**30


@dataclass(frozen=True)
class Shape:
    """What the cost model reads of a model's configuration."""

    model_id: str
    model_type: str
    layers: int
    width: int
    ffn: int
    heads: int
    kv_heads: int
    vocab: int
    positions: int | None  # the context limit (None: relative positions, no fixed limit)
    gated: bool  # a gated MLP (three matrices: LLaMA)
    tied: bool  # the LM head shares the input embedding
    source: str  # "config" (read from the model's own config) or "known" (KNOWN_CONFIGS)

    @property
    def body_params(self) -> int:
        """Parameters a token's forward pass multiplies by (attention, MLP), without embeddings or an LM head."""
        kv = self.width * self.kv_heads // self.heads
        attn = self.width * (2 * self.width + 2 * kv) + 2 * self.width + 2 * kv
        if self.model_type == "xlnet":  # a fifth projection, of the relative positions
            attn += self.width * self.width
        mlp = (3 if self.gated else 2) * self.width * self.ffn + self.ffn + self.width
        return self.layers * (attn + mlp + 4 * self.width)

    @property
    def params(self) -> int:
        embed = self.vocab * self.width + (self.positions or 0) * self.width
        return self.body_params + embed + (0 if self.tied else self.vocab * self.width)

    def forward_flops(self, tokens: float, length: float, lm_head: bool = False) -> float:
        """One forward pass over `tokens` tokens in sequences of `length` tokens."""
        per_token = 2 * self.body_params + 4 * self.layers * self.width * length
        if lm_head:
            per_token += 2 * self.vocab * self.width
        return tokens * per_token

    def train_bytes(self, batch: int, length: int, lm_head: bool = False, param_bytes: int = 16,
                    act_scale: float = 1.0) -> int:
        """Training memory; activations in 16 bits (``act_scale`` 2: float32, as a CPU without autocast keeps them)."""
        acts = act_scale * self.layers * batch * length * (34 * self.width + 5 * self.heads * length)
        logits = batch * length * self.vocab * 4 * (3 if lm_head else 0)
        return int(self.params * param_bytes + acts + logits)

    def infer_bytes(self, batch: int, length: int, weight_bytes: int = 4, kv_cache: bool = False) -> int:
        acts = batch * length * (4 * self.width + self.heads * length) * weight_bytes * 4
        kv = 2 * self.layers * batch * length * (self.width * self.kv_heads // self.heads) * weight_bytes
        return self.params * weight_bytes + acts + (kv if kv_cache else 0)


def _first(cfg: dict, *names, default=None):
    for n in names:
        if cfg.get(n) is not None:
            return cfg[n]
    return default


def shape_from_config(model_id: str, cfg: dict, source: str) -> Shape:
    width = int(_first(cfg, "hidden_size", "n_embd", "d_model"))
    heads = int(_first(cfg, "num_attention_heads", "n_head"))
    mtype = str(cfg.get("model_type", ""))
    return Shape(model_id=model_id, model_type=mtype, layers=int(_first(cfg, "num_hidden_layers", "n_layer")),
                 width=width, ffn=int(_first(cfg, "intermediate_size", "ffn_dim", "d_inner", "n_inner",
                                             default=4 * width)),
                 heads=heads, kv_heads=int(_first(cfg, "num_key_value_heads", default=heads)),
                 vocab=int(cfg["vocab_size"]), positions=_first(cfg, "max_position_embeddings", "n_positions"),
                 gated=mtype in ("llama", "mistral", "gemma", "gemma2", "gemma3_text", "qwen2"),
                 tied=bool(cfg.get("tie_word_embeddings", True)), source=source)


_SHAPES: dict = {}


def local_config(name_or_path: str) -> dict | None:
    """A model's config.json from its folder or the local Hugging Face cache, read as JSON (no torch or transformers
    import, nothing downloaded); None when it is not here. A multimodal config's text part (``text_config``)."""
    import json
    from pathlib import Path

    path = Path(name_or_path) / "config.json"
    if not path.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(name_or_path, "config.json")
        except Exception:
            hit = None
        if not isinstance(hit, str):
            return None
        path = Path(hit)
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {**cfg, **cfg["text_config"]} if isinstance(cfg.get("text_config"), dict) else cfg


def model_shape(model_id: str) -> Shape | None:
    """A model's shape from its local config (a folder, $DILMBENCH_MODEL_MAP, or the hub cache; nothing is
    downloaded), else from KNOWN_CONFIGS; None when neither has it."""
    if model_id in _SHAPES:
        return _SHAPES[model_id]
    from .models import resolve_model

    shape = None
    cfg = local_config(resolve_model(model_id))
    if cfg is not None:
        try:
            shape = shape_from_config(model_id, cfg, "config")
        except (KeyError, TypeError, ValueError):
            shape = None
    if shape is None and model_id in KNOWN_CONFIGS:
        shape = shape_from_config(model_id, KNOWN_CONFIGS[model_id], "known")
    _SHAPES[model_id] = shape
    return shape


def estimated_tokens(texts: list[tuple[str, ...]], specials: int = 3) -> np.ndarray:
    """ceil(1.3 x words) + special tokens per example (fields joined)."""
    words = np.array([sum(len(t.split()) for t in ex) for ex in texts], dtype=float)
    return np.ceil(TOKENS_PER_WORD * words) + specials


def decoding(shape, n: int, new_tokens: float, batch: int, context: float = 0.0) -> tuple[float, int]:
    """n sequences of ``new_tokens`` decoded batch by batch with a KV cache after ``context`` tokens -> (FLOPs, each new
    token attending to the context and half its own length on average; sequential decoding steps)."""
    return (shape.forward_flops(n * new_tokens, context + new_tokens / 2, lm_head=True),
            int(-(-n // batch) * new_tokens))


def expected_batch_max(lengths: np.ndarray, batch: int, cap: int | None = None) -> float:
    """The expected longest of `batch` lengths drawn from `lengths` (the quantile 1 - 1/(batch + 1)), capped."""
    if len(lengths) == 0:
        return 0.0
    q = float(np.quantile(lengths, 1 - 1 / (batch + 1)))
    return float(min(q, cap)) if cap else q


@dataclass
class StageCost:
    """One stage's cost: `flops` per occurrence, `peak_bytes` while it runs, `count` occurrences in the grid unit
    it belongs to (`per`: "run", "set" or "task")."""

    name: str
    flops: float
    peak_bytes: float
    per: str = "set"
    count: int = 1
    note: str = ""
    # bytes a memory-bound part must move (a decoding step reads every weight once): its time is bytes / bandwidth,
    # added to the FLOPs' time
    bytes_moved: float = 0.0
    # sequential steps (optimizer steps, decoding steps, batches): none runs faster than the device's step floor
    steps: int = 0


@dataclass
class CostContext:
    """What a plugin's ``estimate_cost`` reads: the task, token lengths of its pool (a sample) and evaluation split,
    the number of evaluation examples, the device kind ("cuda" or "cpu") and the encoder."""

    task: object
    pool_lengths: np.ndarray
    eval_lengths: np.ndarray
    eval_size: int
    pool_size: int
    device: str
    encoder: str | None = None
    set_lengths: np.ndarray | None = None  # a given set's own token lengths (file: sets); None: like the pool's
    # how long generated texts are: "data" (as the task's own) or "max" (to the length cap, as an untrained
    # generator writes)
    generation: str = "data"

    @property
    def text_lengths(self) -> np.ndarray:
        """The token lengths of the set's texts: its own where known, else the pool's."""
        return self.pool_lengths if self.set_lengths is None else self.set_lengths

    @property
    def cuda(self) -> bool:
        return str(self.device).startswith("cuda")

    @property
    def act_scale(self) -> float:
        """Activations in bfloat16 on CUDA (autocast), float32 on a CPU (the paper preset's CPU runs)."""
        return 1.0 if self.cuda else 2.0

    @property
    def weight_bytes(self) -> int:
        return 2 if self.cuda else 4


def context_for(data, device: str, encoder: str | None) -> CostContext:
    pool_lengths, eval_lengths = data.length_sample()
    return CostContext(task=data.task, pool_lengths=pool_lengths, eval_lengths=eval_lengths,
                       eval_size=data.rows("eval"), pool_size=data.rows("pool"), device=device, encoder=encoder)


@dataclass(frozen=True)
class Device:
    """The stated device: peak FLOP/s and the share of it a run reaches, memory bandwidth, the least time one
    sequential step takes (kernel launches and Python per optimizer or decoding step, whatever its size), memory."""

    flops: float
    utilisation: float
    bandwidth: float
    step_floor: float
    memory: float

    def seconds(self, stage: StageCost) -> float:
        """max(FLOPs at the utilisation + bytes over the bandwidth, steps x the step floor): one occurrence."""
        work = stage.flops / (self.flops * self.utilisation) + stage.bytes_moved / self.bandwidth
        return max(work, stage.steps * self.step_floor)


def fmt_flops(x: float | None) -> str:
    if x is None:
        return "-"
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g}"


def fmt_gib(x: float | None) -> str:
    return "-" if x is None else f"{x / GIB:.1f} GiB"


def fmt_hours(h: float | None) -> str:
    if h is None:
        return "-"
    if h < 1 / 60:
        return f"{h * 3600:.1f} s"
    if h < 1:
        return f"{h * 60:.1f} min"
    return f"{h:,.1f} h"


def ceil_div(a: int, b: int) -> int:
    return int(math.ceil(a / b))
