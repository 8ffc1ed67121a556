"""DiLM in rooms of its own: :mod:`.generator` (the class-conditional LM), :mod:`.matching` (the head-gradient math and
stage 2's loop), :mod:`.method` (the method: stages, identity, sets). Checkpointing lives in the core
(:mod:`dilmbench.checkpoint`)."""
from .generator import Generator
from .matching import (GradientMatching, body_outputs, head_gradient, head_gradient_full_autograd, head_logits,
                       head_parameters, matching_loss)
from .method import PAPER, QUICK, REFERENCE_GEN_LENGTH, STAGE2_KEYS, DiLMMethod, DiLMVanillaMethod

__all__ = ["Generator", "GradientMatching", "body_outputs", "head_gradient", "head_gradient_full_autograd",
           "head_logits", "head_parameters", "matching_loss", "PAPER", "QUICK", "REFERENCE_GEN_LENGTH", "STAGE2_KEYS",
           "DiLMMethod", "DiLMVanillaMethod"]
