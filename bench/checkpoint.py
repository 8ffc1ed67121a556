"""Checkpoints of a long training stage (a generator, a synthesis model): saved atomically, resumed exactly.

A checkpoint is a directory with the model and tokenizer (``save_pretrained``), ``trainer_state.pt`` (optimizer,
scheduler, torch RNG, step and anything picklable the stage needs to continue exactly) and ``progress.json`` (the step
and readable extras). It is published by an atomic rename, so a kill leaves the previous checkpoint intact.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path


def save_state(path: Path, model, tokenizer, opt, sched, step: int, extra: dict | None = None,
               resume: dict | None = None) -> None:
    import torch

    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    torch.save({"optimizer": opt.state_dict() if opt else None, "scheduler": sched.state_dict() if sched else None,
                "torch_rng": torch.get_rng_state(), "step": step, "resume": resume or {}}, tmp / "trainer_state.pt")
    (tmp / "progress.json").write_text(json.dumps({"step": step, **(extra or {})}))
    old = path.with_name(path.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        path.rename(old)
    tmp.rename(path)
    shutil.rmtree(old, ignore_errors=True)


def load_progress(path: Path) -> dict | None:
    """progress.json of a published checkpoint, or None where there is none."""
    try:
        return json.loads((Path(path) / "progress.json").read_text())
    except (OSError, ValueError):
        return None


def restore_trainer_state(path: Path, opt, sched) -> tuple[int, dict]:
    """Load optimizer, scheduler and torch RNG state saved by :func:`save_state` -> (step, resume dict)."""
    import torch

    state = torch.load(Path(path) / "trainer_state.pt", weights_only=False)
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state.get("resume") or {}
