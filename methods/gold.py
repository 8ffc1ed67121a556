"""gold: GOLD (Gholami et al., 2024, arXiv 2403.19754), generation guided by out-of-distribution feedback: in rounds,
a small model is trained on the data written so far; it scores the newly written samples with the energy score
E(x) = -T logsumexp(f(x) / T) (higher: further out of its distribution); the most out-of-distribution samples are
fed back to the LLM as demonstrations for the next round, so it writes where the small model is weak; an
energy-based filter drops the most extreme ones as noise. DPC per class are then kept from what was written.

The schedule here: round 0 writes zero-shot; from round 1 on, each round's samples are scored by a small model
trained on all earlier rounds; in each class, the ``noise_share`` with the highest energy is dropped, and the next
``feedback`` highest become the next round's demonstrations (from round 2 on the prompts carry them).

Deviations (GOLD's public code has broken call signatures; each a config value):
- prompts are ZeroGen's label-descriptive ones (methods/synthesis.py) with the feedback samples as demonstrations;
- the small model is the suite's fine-tuning recipe (``learner``, ``small_steps``), with cross-entropy, or the
  paper's symmetric cross-entropy (``loss: sce``, alpha 0.1, beta 1.0, log 0 clipped at -4) as an option;
- the noise filter drops a fixed share of each round by energy instead of the paper's threshold; the pool is
  bounded by the DPC budget (DPC x pool_factor per class over all rounds);
- the writer: the paper preset keeps the public code's meta-llama/Llama-2-7b-chat-hf (run through vLLM on a GPU);
  ``quick`` uses SmolLM2-135M-Instruct (methods/synthesis.py says why), which is what its results measure.
"""
from __future__ import annotations

import numpy as np

from dilmbench.api import MethodContext
from dilmbench.errors import DilmbenchError
from dilmbench.models import QUICK_MODEL
from dilmbench.seeds import derive_seed

from .synthesis import QUICK, SHARED_CONFIG, SynthesisMethod


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """-T logsumexp(logits / T) per row (Liu et al., 2020): higher means further out of distribution."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    m = z.max(1, keepdims=True)
    return -temperature * (m[:, 0] + np.log(np.exp(z - m).sum(1)))


class GOLDMethod(SynthesisMethod):
    """GOLD: rounds of generation fed with the small model's most out-of-distribution samples; energy filter."""

    default_config = {**SHARED_CONFIG, "generator": "meta-llama/Llama-2-7b-chat-hf",  # the public code's LLM
                      "learner": "distilbert-base-uncased", "small_steps": 200, "loss": "ce",
                      "rounds": 3, "feedback": 2, "noise_share": 0.1, "energy_temperature": 1.0}
    presets = {"quick": {**QUICK, "learner": QUICK_MODEL}}

    def extra_models(self) -> list[str]:
        return [self.config["learner"]]

    def write_pool(self, ctx: MethodContext, gen, spec: dict, dpc: int, base: int) -> dict[int, list]:
        from dilmbench.finetune import FinetuneRecipe, fit_small_model, logits_of, symmetric_cross_entropy

        cfg, task = self.config, ctx.task
        if cfg["loss"] not in ("ce", "sce"):
            raise DilmbenchError(f"gold loss must be ce or sce, got '{cfg['loss']}'")
        if cfg["rounds"] < 1 or not 0 <= cfg["noise_share"] < 1:
            raise DilmbenchError("gold needs rounds >= 1 and 0 <= noise_share < 1")
        per_round = max(1, -(-dpc * cfg["pool_factor"] // cfg["rounds"]))
        recipe = FinetuneRecipe(steps=cfg["small_steps"])
        loss_fn = symmetric_cross_entropy() if cfg["loss"] == "sce" else None
        pools = {c: [] for c in range(task.num_labels)}
        feedback = {c: [] for c in range(task.num_labels)}
        history = []
        for r in range(cfg["rounds"]):
            new = {c: self.write(ctx, gen, spec, c, per_round, derive_seed(base, "round", r, c),
                                 demos="".join(self.demo(spec, c, row) for row in feedback[c]))
                   for c in range(task.num_labels)}
            if r == 0:
                for c in pools:
                    pools[c].extend(new[c])
                continue
            texts = [t for c in pools for t in pools[c]]
            labels = [c for c in pools for _ in pools[c]]
            model, tok = fit_small_model(cfg["learner"], task.num_labels, texts, labels, recipe,
                                         derive_seed(base, "small", r), ctx.device, loss_fn=loss_fn)
            dropped = 0
            for c in pools:
                if not new[c]:
                    continue
                energy = energy_score(logits_of(model, tok, new[c], recipe, ctx.device), cfg["energy_temperature"])
                order = np.argsort(-energy, kind="stable")  # most out of distribution first
                noisy = int(np.floor(cfg["noise_share"] * len(order)))
                kept = order[noisy:]
                feedback[c] = [new[c][i] for i in kept[: cfg["feedback"]]]
                pools[c].extend(new[c][i] for i in sorted(kept))
                dropped += noisy
            history.append({"round": r, "dropped_as_noise": dropped,
                            "feedback": {task.label_names[c]: len(feedback[c]) for c in pools}})
        self._provenance = {"gold_rounds": history}
        return pools
