"""`dilmbench run --dry-run`: the grid planned as a run would plan it (runs to make, runs already done, sets to make),
with what it will cost (dilmbench.cost), and nothing run or written."""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import replace

from .cost import Device, context_for, estimated_tokens, fmt_flops, fmt_gib, fmt_hours

# An A100 80GB, the DiLM paper's kind of GPU: bfloat16 dense peak, the share of it a run reaches, HBM bandwidth
# (memory-bound decoding), the least time one sequential step takes in eager PyTorch (kernel launches and Python per
# optimizer or decoding step of a small model), memory. All are assumptions the output prints; pass your own.
DEFAULT_DEVICE_FLOPS = 312e12
DEFAULT_UTILISATION = 0.3
DEFAULT_BANDWIDTH = 2.0e12
DEFAULT_STEP_FLOOR = 0.02
DEFAULT_MEMORY = 80 * 2**30


def make_device(device_flops=None, utilisation=None, bandwidth=None, step_floor=None, memory_gib=None) -> Device:
    """The stated device (defaults above for what is not given); a bad number is a one-line error."""
    from .errors import DilmbenchError

    d = Device(flops=DEFAULT_DEVICE_FLOPS if device_flops is None else device_flops,
               utilisation=DEFAULT_UTILISATION if utilisation is None else utilisation,
               bandwidth=DEFAULT_BANDWIDTH if bandwidth is None else bandwidth,
               step_floor=DEFAULT_STEP_FLOOR if step_floor is None else step_floor,
               memory=DEFAULT_MEMORY if memory_gib is None else memory_gib * 2**30)
    checks = (("--device-flops", d.flops, d.flops > 0, "a positive number"),
              ("--utilisation", d.utilisation, 0 < d.utilisation <= 1, "a share in (0, 1]"),
              ("--device-bandwidth", d.bandwidth, d.bandwidth > 0, "a positive number"),
              ("--step-floor", d.step_floor, d.step_floor >= 0, "zero or more seconds"),
              ("--device-memory", d.memory, d.memory > 0, "a positive number"))
    for name, value, ok, what in checks:
        if not ok:
            raise DilmbenchError(f"{name} must be {what}, got {value:g}")
    return d


class _Tally:
    """What the dry run counts as it walks the plan: the table rows, the per-stage detail, warnings and totals."""

    def __init__(self, dev: Device):
        self.dev = dev
        self.rows, self.stage_rows, self.notes, self.detail, self.too_big = [], [], [], [], []
        self.totals = {"runs": 0, "done": 0, "sets": 0, "flops": 0.0, "seconds": 0.0, "unestimated": 0}
        self.seen_task_stages: set = set()
        self.stored: set = set()  # (task, method label, dpc, set index) of sets already on disk: reused, not made

    def runs(self, runner, task, spec, planned, cctx) -> None:
        """The evaluator's cost of every run still to make, one row per learner; a set already made (its runs still
        to do) is costed by its own texts."""
        ev = runner.evaluator
        memo: dict = {}
        by_learner: dict = defaultdict(lambda: {"todo": 0, "done": 0, "flops": {}, "peak": 0.0, "flops_total": 0.0,
                                                "seconds": 0.0, "unknown": False})
        for ps in planned:
            todo = [r for r in ps.runs if r.status != "done"]
            set_size = ps.dpc * task.num_labels if ps.given is None else len(ps.given)
            known = ps.given
            if known is None and todo:
                path = runner.set_path(task.name, spec.label, ps.dpc, ps.set_index)
                known = runner._stored_set(path, ps.config_hash, task)[0] if path.exists() else None
                if known is not None:
                    self.stored.add((task.name, spec.label, ps.dpc, ps.set_index))
            run_ctx = cctx if known is None else replace(cctx, set_lengths=estimated_tokens(known.texts))
            for r in ps.runs:
                row = by_learner[r.learner]
                if r.status == "done":
                    row["done"] += 1
                    continue
                row["todo"] += 1
                key = (set_size, r.learner, None if known is None else (ps.dpc, ps.set_index))
                if key not in memo:
                    memo[key] = ev.estimate_cost(run_ctx, set_size, r.learner)
                stages = memo[key]
                if stages is None:
                    row["unknown"] = True
                    continue
                self._run_stages(task, spec, r, ps, stages, row)
        for learner, row in by_learner.items():
            self.rows.append([task.name, spec.label, learner, row["todo"], row["done"],
                              " / ".join(fmt_flops(row["flops"][d]) for d in sorted(row["flops"])) or "not estimated",
                              fmt_gib(row["peak"]) if row["flops"] else "-",
                              fmt_hours(row["seconds"] / 3600) if row["flops"] else "-"])
            self.totals["runs"] += row["todo"]
            self.totals["done"] += row["done"]
            self.totals["flops"] += row["flops_total"]
            self.totals["seconds"] += row["seconds"]
            self.totals["unestimated"] += row["todo"] if row["unknown"] else 0
        self.totals["sets"] += sum(1 for ps in planned if self._to_make(task, spec, ps))

    def _to_make(self, task, spec, ps) -> bool:
        """Whether the run would make this set: not given, not already on disk under its configuration, and some run
        of it still to do."""
        return (ps.given is None and (task.name, spec.label, ps.dpc, ps.set_index) not in self.stored
                and any(r.status != "done" for r in ps.runs))

    def _run_stages(self, task, spec, r, ps, stages, row: dict) -> None:
        dev = self.dev
        flops = sum(s.flops * s.count for s in stages)
        peak = max((s.peak_bytes for s in stages), default=0.0)
        for s in stages:
            self.detail.append({"task": task.name, "method": spec.label, "learner": r.learner, "dpc": ps.dpc,
                                "set_index": ps.set_index, "init": r.init, "stage": s.name, "per": "run",
                                "count": s.count, "flops": s.flops, "peak_bytes": s.peak_bytes,
                                "seconds": dev.seconds(s)})
            line = f"{task.name} {spec.label} {r.learner} DPC {ps.dpc}: {s.note}"
            if s.note and line not in self.notes:
                self.notes.append(line)
        row["flops"].setdefault(ps.dpc, flops)
        row["peak"] = max(row["peak"], peak)
        row["flops_total"] += flops
        row["seconds"] += sum(dev.seconds(s) * s.count for s in stages)
        if peak > dev.memory:
            line = f"{task.name} {spec.label} {r.learner} DPC {ps.dpc}: a run needs ~{fmt_gib(peak)}"
            if line not in self.too_big:
                self.too_big.append(line)

    def sets(self, method, task, spec, planned, cctx) -> None:
        """The method's own stages: per task once (by name: methods that share work, a cached embedding or one
        trained generator, name it alike), per set for each set still to make."""
        dev = self.dev
        dpcs_todo: dict = defaultdict(int)
        for ps in planned:
            if self._to_make(task, spec, ps):
                dpcs_todo[ps.dpc] += 1
        for dpc, n_sets in sorted(dpcs_todo.items()):
            stages = method.estimate_cost(cctx, dpc)
            if stages is None:
                self.stage_rows.append([task.name, spec.label, f"making sets (DPC {dpc})", n_sets, "not estimated",
                                        "-", "-", ""])
                continue
            for s in stages:
                if s.per == "task":
                    if (task.name, s.name) in self.seen_task_stages:
                        continue
                    self.seen_task_stages.add((task.name, s.name))
                    count = 1
                else:
                    count = n_sets * s.count
                seconds = dev.seconds(s) * count
                self.totals["flops"] += s.flops * count
                self.totals["seconds"] += seconds
                if s.peak_bytes > dev.memory:
                    self.too_big.append(f"{task.name} {spec.label} {s.name}: ~{fmt_gib(s.peak_bytes)}")
                self.detail.append({"task": task.name, "method": spec.label, "learner": None, "dpc": dpc,
                                    "stage": s.name, "per": s.per, "count": count, "flops": s.flops,
                                    "peak_bytes": s.peak_bytes, "seconds": dev.seconds(s), "steps": s.steps})
                self.stage_rows.append([task.name, spec.label, s.name, count, fmt_flops(s.flops),
                                        fmt_gib(s.peak_bytes), fmt_hours(seconds / 3600), s.note])


def _models(runner) -> list[str]:
    from .cost import model_shape

    where = {"config": "its own config", "known": "the hub config's values (dilmbench.cost.KNOWN_CONFIGS)"}
    out = []
    for model_id in runner.required_models():
        shape = model_shape(model_id)
        out.append(f"{model_id}: " + (f"{shape.params / 1e6:,.0f}M parameters, shape from {where[shape.source]}"
                                      if shape else "shape unknown: its cost not estimated"))
    return out


def _header(cfg: dict, dev: Device, kind: str, evaluator: str) -> list[str]:
    return [f"dilmbench run --dry-run: preset {cfg.get('preset')}, tasks {', '.join(cfg['tasks'])}, methods "
            f"{', '.join(cfg['methods'])}, DPC {', '.join(map(str, cfg['dpc']))}, {cfg['sets']} sets x "
            f"{cfg['inits']} inits, evaluator {evaluator}; nothing run or written",
            f"assumptions: {dev.flops / 1e12:g} TFLOP/s (--device-flops) at {dev.utilisation:.0%} utilisation "
            f"(--utilisation); {dev.bandwidth / 1e12:g} TB/s for memory-bound decoding (--device-bandwidth); no "
            f"sequential step (an optimizer step, a decoding step, a batch) faster than {dev.step_floor * 1000:g} ms "
            f"(--step-floor); {dev.memory / 2**30:.0f} GiB of device memory (--device-memory); device kind {kind} ("
            + ("bfloat16 autocast" if kind.startswith("cuda") else "float32") + "). FLOPs and memory as "
            "dilmbench.cost counts them: 2 x non-embedding parameters per token forward, x3 for a training step, "
            "attention and LM heads added; 16 B per trained parameter plus activations; tokens ~1.3 per word of the "
            "task's own texts"]


def dry_run(runner, dev: Device | None = None, device: str | None = None, generation: str = "data") -> tuple[str, dict]:
    """(the report as text, its numbers as a dict; ``detail`` lists every stage counted, with its seconds on ``dev``).
    ``device``: "cuda" or "cpu" for the cost model's choices (padded batches, weight and activation dtype); default:
    the config's device, "auto" counting as cuda (a dry run plans a GPU launch). ``generation``: "data" (generated
    texts as long as the task's) or "max" (to the length cap, as an untrained generator writes)."""
    from tabulate import tabulate

    dev = dev or make_device()
    t0 = time.perf_counter()
    cfg = runner.cfg
    runner.build()
    kind = device or cfg.get("device") or "auto"
    kind = "cuda" if kind == "auto" else kind
    plan = runner.plan()
    t_plan = time.perf_counter() - t0
    tally = _Tally(dev)
    for pm in plan:
        cctx = replace(context_for(pm.data, kind, cfg["encoder"]), generation=generation)
        tally.runs(runner, pm.task, pm.spec, pm.cells, cctx)
        tally.sets(runner.methods[pm.spec.label], pm.task, pm.spec, pm.cells, cctx)
    models = _models(runner)
    totals = tally.totals
    elapsed = time.perf_counter() - t0
    out = _header(cfg, dev, kind, runner.evaluator.name) + [
           "",
           "runs (FLOPs of one run at each DPC; peak memory of one run; hours for the runs still to make)",
           tabulate(tally.rows, headers=["task", "method", "learner", "to make", "done", "FLOPs/run", "peak mem",
                                         "hours"], tablefmt="simple"),
           "",
           "making the sets (a per-task stage once, shared by every set and DPC; a per-set stage for each set "
           "still to make)",
           tabulate(tally.stage_rows, headers=["task", "method", "stage", "times", "FLOPs each", "peak mem", "hours",
                                               "note"], tablefmt="simple") if tally.stage_rows else "(no sets to make)",
           "",
           f"total: {totals['runs']:,} runs to make ({totals['done']:,} done), {totals['sets']:,} sets to make, "
           f"{fmt_flops(totals['flops'])}FLOP, {fmt_hours(totals['seconds'] / 3600)} at the assumptions above"
           + (f"; {totals['unestimated']:,} runs not estimated" if totals["unestimated"] else ""),
           "models: " + "; ".join(models)]
    out += [f"warning: {n}" for n in tally.notes]
    out += [f"warning: more than the device's {dev.memory / 2**30:.0f} GiB: {n}" for n in tally.too_big]
    out.append(f"planned in {elapsed:.2f} s ({t_plan:.2f} s planning as a run would, the data or its kept summary read, "
               f"{elapsed - t_plan:.2f} s counting the cost)")
    return "\n".join(out), {**totals, "hours": totals["seconds"] / 3600, "rows": tally.rows,
                            "stages": tally.stage_rows, "notes": tally.notes, "too_big": tally.too_big,
                            "plan_seconds": elapsed, "detail": tally.detail}
