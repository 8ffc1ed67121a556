"""What DiLM's stages share (stage 1 and 2 in method.py and matching.py, stage 3's sampling): the generation length,
the stages' wall clock across kills, and the autocast of their forward passes."""
from __future__ import annotations

import time

from dilmbench.errors import DilmbenchError

# The reference's total generation length per task (class token included): dataset_attrs.py `max_length`.
REFERENCE_GEN_LENGTH = {"sst2": 68, "qqp": 313, "mnli": 421}


def max_new_tokens(cfg: dict, task) -> int:
    if cfg["max_new_tokens"] != "task":
        return int(cfg["max_new_tokens"])
    if task.name not in REFERENCE_GEN_LENGTH:
        raise DilmbenchError(f"dilm has no reference generation length for task '{task.name}': set max_new_tokens")
    return REFERENCE_GEN_LENGTH[task.name] - 1


def stage_seconds(resume: dict) -> float:
    """A training stage's wall seconds so far, across kills (see DiLMMethod.open_stage)."""
    return resume["seconds_before"] + time.perf_counter() - resume["t0"]


def stage_autocast(device, cfg: dict):
    """bfloat16 autocast for a training stage's forward passes: on CUDA unless the config's ``bf16`` is off, on a CPU
    when its ``cpu_bf16`` is on."""
    from contextlib import nullcontext

    from dilmbench.finetune import autocast_for

    if str(device).startswith("cpu"):
        return autocast_for(device, cpu_bf16=True) if cfg.get("cpu_bf16") else nullcontext()
    return autocast_for(device) if cfg["bf16"] else nullcontext()
