"""`dilmbench run --dry-run`: the grid planned as a run would plan it (runs to make, runs already done, sets to make),
with what it will cost (dilmbench.cost), and nothing run or written."""
from __future__ import annotations

import time
from collections import defaultdict

from dataclasses import replace

from .cost import StageCost, context_for, estimated_tokens, fmt_flops, fmt_gib, fmt_hours, hours, model_shape

# Bfloat16 dense peak of an NVIDIA A100 (the DiLM paper's kind of GPU); the utilisation is the share of it a run
# reaches. Both are assumptions the output prints; pass your own.
DEFAULT_DEVICE_FLOPS = 312e12
DEFAULT_UTILISATION = 0.3
DEFAULT_BANDWIDTH = 2.0e12  # bytes/s: an A100 80GB's HBM (memory-bound decoding steps)
DEFAULT_MEMORY = 80 * 2**30  # bytes: an A100 80GB; a run or stage estimated above it is flagged


def _sum(stages: list[StageCost] | None) -> tuple[float | None, float | None]:
    if stages is None:
        return None, None
    return sum(s.flops * s.count for s in stages), max((s.peak_bytes for s in stages), default=0.0)


def dry_run(runner, device_flops: float = DEFAULT_DEVICE_FLOPS, utilisation: float = DEFAULT_UTILISATION,
            device: str | None = None, generation: str = "data", bandwidth: float = DEFAULT_BANDWIDTH,
            memory: float = DEFAULT_MEMORY) -> tuple[str, dict]:
    """(the report as text, its numbers as a dict; ``detail`` lists every stage counted). ``device``: "cuda" or
    "cpu" for the cost model's choices (padded batches, weight dtype); default: the config's device, "auto" counting
    as cuda (a dry run plans a GPU launch). ``generation``: "data" (generated texts as long as the task's) or "max"
    (to the length cap, as an untrained generator writes)."""
    from tabulate import tabulate

    from .errors import DilmbenchError

    if not device_flops or device_flops <= 0:
        raise DilmbenchError(f"--device-flops must be a positive number of FLOP/s, got {device_flops}")
    if not 0 < utilisation <= 1:
        raise DilmbenchError(f"--utilisation must be a share in (0, 1], got {utilisation}")
    if not bandwidth or bandwidth <= 0:
        raise DilmbenchError(f"--device-bandwidth must be a positive number of bytes/s, got {bandwidth}")
    if not memory or memory <= 0:
        raise DilmbenchError(f"--device-memory must be a positive number of GiB, got {memory}")
    t0 = time.perf_counter()
    cfg = runner.cfg
    runner.build()
    dev = device or cfg.get("device") or "auto"
    dev = "cuda" if dev == "auto" else dev
    plan = runner.plan()
    t_plan = time.perf_counter() - t0
    ev = runner.evaluator
    rows, stage_rows, notes, detail = [], [], [], []
    totals = {"runs": 0, "done": 0, "sets": 0, "flops": 0.0, "bytes_moved": 0.0, "unestimated": 0}
    too_big: list[str] = []
    seen_task_stages = set()
    for task, data, _load_s, spec, planned in plan:
        cctx = context_for(data, dev, cfg["encoder"])
        cctx.extra["generation"] = generation
        method = runner.methods[spec.label]
        memo: dict = {}
        by_learner: dict = defaultdict(lambda: {"todo": 0, "done": 0, "flops": [], "peak": 0.0, "total": 0.0,
                                                "unknown": False})
        sets_todo = 0
        for ps in planned:
            todo = [r for r in ps.runs if r.status != "done"]
            sets_todo += bool(todo) and ps.given is None
            set_size = ps.dpc * task.num_labels if ps.given is None else len(ps.given)
            run_ctx = cctx if ps.given is None else replace(cctx, set_lengths=estimated_tokens(ps.given.texts))
            for r in ps.runs:
                row = by_learner[r.learner]
                if r.status == "done":
                    row["done"] += 1
                    continue
                row["todo"] += 1
                key = (set_size, r.learner, None if ps.given is None else ps.set_index)
                if key not in memo:
                    memo[key] = ev.estimate_cost(run_ctx, set_size, r.learner)
                stages = memo[key]
                for s in stages or []:
                    detail.append({"task": task.name, "method": spec.label, "learner": r.learner, "dpc": ps.dpc,
                                   "set_index": ps.set_index, "init": r.init, "stage": s.name, "per": "run",
                                   "flops": s.flops, "peak_bytes": s.peak_bytes})
                flops, peak = _sum(stages)
                for s in stages or []:
                    line = f"{task.name} {spec.label} {r.learner} DPC {ps.dpc}: {s.note}"
                    if s.note and line not in notes:
                        notes.append(line)
                if flops is None:
                    row["unknown"] = True
                    continue
                row["flops"].append((ps.dpc, flops))
                row["peak"] = max(row["peak"], peak)
                if peak > memory:
                    line = f"{task.name} {spec.label} {r.learner} DPC {ps.dpc}: a run needs ~{fmt_gib(peak)}"
                    if line not in too_big:
                        too_big.append(line)
                row["total"] += flops
        for learner, row in by_learner.items():
            per_dpc = {}
            for dpc, f in row["flops"]:
                per_dpc.setdefault(dpc, f)
            rows.append([task.name, spec.label, learner, row["todo"], row["done"],
                         " / ".join(fmt_flops(per_dpc[d]) for d in sorted(per_dpc)) or "not estimated",
                         fmt_gib(row["peak"]) if row["flops"] else "-",
                         fmt_hours(hours(row["total"], device_flops, utilisation)) if row["flops"] else "-"])
            totals["runs"] += row["todo"]
            totals["done"] += row["done"]
            totals["flops"] += row["total"]
            totals["unestimated"] += row["todo"] if row["unknown"] else 0
        totals["sets"] += sets_todo
        # the method's own stages: per task once, per set for each set still to make
        dpcs_todo: dict = defaultdict(int)
        for ps in planned:
            if ps.given is None and any(r.status != "done" for r in ps.runs):
                dpcs_todo[ps.dpc] += 1
        for dpc, n_sets in sorted(dpcs_todo.items()):
            stages = method.estimate_cost(cctx, dpc)
            if stages is None:
                stage_rows.append([task.name, spec.label, f"making sets (DPC {dpc})", n_sets, "not estimated", "-", "-",
                                   ""])
                continue
            for s in stages:
                if s.per == "task":  # once per task by its name: methods that share work (a cached embedding, one
                    key = (task.name, s.name)  # trained generator) name it alike
                    if key in seen_task_stages:
                        continue
                    seen_task_stages.add(key)
                    count = 1
                else:
                    count = n_sets * s.count
                total = s.flops * count
                totals["flops"] += total
                totals["bytes_moved"] += s.bytes_moved * count
                if s.peak_bytes > memory:
                    too_big.append(f"{task.name} {spec.label} {s.name}: ~{fmt_gib(s.peak_bytes)}")
                detail.append({"task": task.name, "method": spec.label, "learner": None, "dpc": dpc, "stage": s.name,
                               "per": s.per, "count": count, "flops": s.flops, "peak_bytes": s.peak_bytes,
                               "bytes_moved": s.bytes_moved})
                stage_rows.append([task.name, spec.label, s.name, count, fmt_flops(s.flops), fmt_gib(s.peak_bytes),
                                   fmt_hours(hours(total, device_flops, utilisation, s.bytes_moved * count,
                                                   bandwidth)), s.note])
    models = []
    for model_id in runner.required_models():
        shape = model_shape(model_id)
        where = {"config": "its own config", "known": "the hub config's values (dilmbench.cost.KNOWN_CONFIGS)"}
        models.append(f"{model_id}: " + (f"{shape.params / 1e6:,.0f}M parameters, shape from "
                                         f"{where[shape.source]}" if shape else "shape unknown: its cost not estimated"))
    elapsed = time.perf_counter() - t0
    out = []
    out.append(f"dilmbench run --dry-run: preset {cfg.get('preset')}, tasks {', '.join(cfg['tasks'])}, methods "
               f"{', '.join(cfg['methods'])}, DPC {', '.join(map(str, cfg['dpc']))}, {cfg['sets']} sets x "
               f"{cfg['inits']} inits, evaluator {ev.name}; nothing run or written")
    out.append(f"assumptions: {device_flops / 1e12:g} TFLOP/s (--device-flops) at {utilisation:.0%} utilisation "
               f"(--utilisation), {bandwidth / 1e12:g} TB/s for memory-bound decoding steps (--device-bandwidth), "
               f"{memory / 2**30:.0f} GiB of device memory (--device-memory), device kind {dev} ("
               + ("bfloat16 autocast" if dev.startswith("cuda") else "float32") + "); FLOPs and memory as dilmbench.cost counts them (2 x non-embedding "
               "parameters per token forward, x3 for a training step, attention and LM heads added; 16 B per trained "
               "parameter plus activations); tokens ~1.3 per word of the task's own texts")
    out.append("")
    out.append("runs (FLOPs per run at each DPC; peak memory of one run; hours for the runs still to make)")
    out.append(tabulate(rows, headers=["task", "method", "learner", "to make", "done", "FLOPs/run", "peak mem",
                                       "hours"], tablefmt="simple"))
    out.append("")
    out.append("making the sets (a per-task stage once, shared by every set and DPC; a per-set stage for each set "
               "still to make)")
    out.append(tabulate(stage_rows, headers=["task", "method", "stage", "times", "FLOPs each", "peak mem", "hours",
                                             "note"], tablefmt="simple") if stage_rows else "(no sets to make)")
    out.append("")
    out.append(f"total: {totals['runs']:,} runs to make ({totals['done']:,} done), {totals['sets']:,} sets to make, "
               f"{fmt_flops(totals['flops'])}FLOP, "
               f"{fmt_hours(hours(totals['flops'], device_flops, utilisation, totals['bytes_moved'], bandwidth))} "
               f"at the assumptions above"
               + (f"; {totals['unestimated']:,} runs not estimated" if totals["unestimated"] else ""))
    out.append("models: " + "; ".join(models))
    for n in notes:
        out.append(f"warning: {n}")
    for n in too_big:
        out.append(f"warning: more than the device's {memory / 2**30:.0f} GiB: {n}")
    out.append(f"planned in {elapsed:.2f} s ({t_plan:.2f} s loading the data and planning as a run would, "
               f"{elapsed - t_plan:.2f} s counting the cost)")
    return "\n".join(out), {**totals, "hours": hours(totals["flops"], device_flops, utilisation,
                                                     totals["bytes_moved"], bandwidth), "rows": rows, "too_big": too_big,
                            "stages": stage_rows, "notes": notes, "seconds": elapsed,
                            "detail": detail}
