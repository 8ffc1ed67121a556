"""The paper preset rehearsed at its real shapes: every stage for a few steps on stand-ins of its models.

    python benchmarks/speed/paper_rehearsal.py --data-dir DIR [--tasks sst2,qqp,mnli] [--device cpu|cuda]
        [--icl gpt2-xl,facebook/opt-2.7b] [--out results/benchmarks/paper_rehearsal.txt]

Stand-ins (dilmbench.rehearsal): the real configurations of bert-base-uncased, roberta-base, xlnet-base-cased,
bert-large-uncased, gpt2 and the ICL models, random weights, tokenizers of the right kind and size, named by their
hub ids through a model map ($DILMBENCH_MODEL_MAP). The unchanged paper preset then runs, per task, in one process
per step (so each step's peak memory is its own):

  coresets    random, k-centers, herding at DPC 20 (the pool embedded by bert-base-uncased), each set fine-tuned by
              the three learners for --steps steps at the real batch (40 / 60) and scored on the evaluation slice
  long        a set of DPC 5 texts of 600+ words (pairs: both sides), fine-tuned at 512-token inputs
  stage 1+3   dilm_vanilla: stage 1 (--lm-steps LM steps at batch 64), stage 3 (DPC 5 x --sample-factor samples per
              class at the reference's length: an untrained generator never stops before it), sets only
  stage 2+3   dilm: one outer loop of gradient matching (2 inner updates at the real batches: 200 real / 64
              synthetic per class, 100 x 2 on pairs; a learner step between; a sample pool of 64 per class
              clustered into 64), then stage 3, then the three learners fine-tune its set
  bert-large  BERT-large as a fourth learner (the paper's Table 2), on the first task
  icl         each --icl model prompted with a DPC-5 random set (16 evaluation queries; the demonstrations'
              perplexity check is off, as random weights read any text at ~vocabulary-size perplexity)

Data: the task's train split cut to --train-rows rows (the preset's dev split of 2,000 is carved from them) and the
evaluation split to --eval-rows rows; the shapes do not depend on how many rows there are.

Each step's wall time and peak memory (the process's max RSS) are printed beside the dry run's estimate
(dilmbench.dryrun on the same configuration, generation at the length cap, the device's FLOP/s measured by a matmul
probe in the same process kind). A step that fails is reported with its error and the script exits non-zero.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dilmbench.record import slug

WRAP = r"""
import json, resource, sys, time, traceback
out, args = sys.argv[1], sys.argv[2:]
t0, rc, err = time.perf_counter(), 0, None
try:
    from dilmbench.cli import main
    main(args, standalone_mode=False)
except SystemExit as exc:
    rc = exc.code or 0
except BaseException:
    rc, err = 1, traceback.format_exc()
# VmHWM: this process's own peak (ru_maxrss would keep the parent's size at the fork, across exec)
hwm = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
json.dump({"rc": rc, "wall_s": time.perf_counter() - t0, "error": err, "peak_rss_bytes": hwm}, open(out, "w"))
"""

DILM_FEW_STEPS = {  # the reference's batch sizes and lengths; the counts of steps are cut
    "outer_loops": 1, "inner_loops": 2, "learner_steps": 1, "n_repsets": 1, "pool_batches": 1, "gen_interval": 1,
    "ckpt_every": 1000,
}


def slice_data(src: Path, dst: Path, tasks: list[str], train_rows: int, eval_rows: int) -> Path:
    import pandas as pd

    from dilmbench.tasks import get_task

    for name in tasks:
        task = get_task(name)
        for split, rows in ((task.train_split, train_rows), (task.eval_split, eval_rows)):
            files = sorted((src / name).glob(f"{split}-*.parquet"))
            if not files:
                sys.exit(f"error: no {name}/{split}-*.parquet under {src}")
            df = pd.concat([pd.read_parquet(f) for f in files])
            df = df.sample(n=min(rows, len(df)), random_state=0).sort_index()
            (dst / name).mkdir(parents=True, exist_ok=True)
            df.to_parquet(dst / name / f"{split}-00000-of-00001.parquet")
    return dst


def long_sets(data_dir: Path, dst: Path, task_name: str, dpc: int = 5, words: int = 600) -> Path:
    """A JSONL set of DPC texts per class, each field 600+ words (pool texts of the class joined)."""
    import pandas as pd

    from dilmbench.tasks import get_task

    task = get_task(task_name)
    df = pd.read_parquet(next((data_dir / task_name).glob(f"{task.train_split}-*.parquet")))
    rng = np.random.default_rng(0)
    lines = []
    for c in range(task.num_labels):
        rows = df[df.label == c]
        for _ in range(dpc):
            ex = {"label": c}
            for f in task.text_fields:
                text = []
                while sum(len(t.split()) for t in text) < words:
                    text.append(str(rows.iloc[int(rng.integers(len(rows)))][f]))
                ex[f] = " ".join(text)
            lines.append(json.dumps(ex))
    folder = dst / f"long-{task_name}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "set00.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def matmul_flops(device: str, dtype: str = "float32") -> float:
    """FLOP/s of a BERT-base-sized matmul (4096 x 768 x 3072) on the device, the best of 5."""
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(4096, 768, device=device, dtype=dt)
    b = torch.randn(768, 3072, device=device, dtype=dt)
    best = 0.0
    for _ in range(6):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, 5 * 2 * 4096 * 768 * 3072 / (time.perf_counter() - t0))
    return best


def run_step(name: str, args: list[str], env: dict, work: Path) -> dict:
    out = work / f"step-{slug(name)}.json"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", WRAP, str(out), *args], env=env, capture_output=True, text=True)
    res = json.loads(out.read_text()) if out.is_file() else {"rc": proc.returncode, "error": proc.stderr[-2000:]}
    res["log"] = (proc.stdout + proc.stderr)[-3000:]
    res["outer_wall_s"] = time.perf_counter() - t0
    print(f"[{name}] rc {res['rc']} in {res['outer_wall_s']:.0f}s, peak {res.get('peak_rss_bytes', 0) / 2**30:.1f} GiB",
          flush=True)
    if res["rc"]:
        print(res.get("error") or res["log"], flush=True)
    return res


def estimate(args_list: list[str], env: dict, device: str, flops: float) -> dict:
    """The dry run's detail for a step's command line (same options, nothing run)."""
    import click

    from dilmbench import cli
    from dilmbench.dryrun import dry_run, make_device
    from dilmbench.runner import Runner

    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        ctx = cli.run.make_context("run", list(args_list))
        p = ctx.params
        from dataclasses import replace

        from dilmbench.config import RunOptions

        cfg = replace(RunOptions.from_params(ctx.params), device="cpu" if device == "cpu" else "auto").config()
        # plan against an empty folder that sees the step's sets: its runs count as to make (they ran), its sets
        # are costed by their own texts
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="dry-"))
        if (Path(p["out"]) / "sets").is_dir():
            (scratch / "sets").symlink_to(Path(p["out"]).resolve() / "sets")
        runner = Runner(cfg, scratch, progress=False, sets_only=p["sets_only"])
        # compute at the measured matmul rate, nothing else: the report shows what the FLOPs alone miss
        _, info = dry_run(runner, make_device(flops, 1.0, step_floor=0.0), device=device, generation="max")
        if p["sets_only"]:
            info["detail"] = [d for d in info["detail"] if d["per"] != "run"]
        return info
    except click.ClickException as exc:
        raise SystemExit(f"error: {exc}") from None
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def measured(out: Path, task: str, log: str) -> dict:
    """Seconds measured per kind of stage: the runs' train / eval / prompt timings, DiLM's stage seconds (its sets'
    provenance), and the run's own "time by phase" line for making sets."""
    got = {"train": 0.0, "evaluate": 0.0, "prompt": 0.0, "stage 1": None, "stage 2": None, "runs": 0}
    for f in (out / "runs" / task).rglob("*.json"):
        t = json.loads(f.read_text()).get("timing_s", {})
        got["runs"] += 1
        got["train"] += t.get("train", 0.0)
        got["evaluate"] += t.get("eval", 0.0)
        got["prompt"] += t.get("score", 0.0)
    for f in (out / "sets" / task).rglob("*.meta.json"):
        prov = json.loads(f.read_text()).get("provenance") or {}
        stage = prov.get("generator_stage_seconds") or {}
        if stage.get("lm"):
            got["stage 1"] = stage["lm"]
        if stage.get("gm"):
            got["stage 2"] = stage["gm"]
    phases = {}
    for line in log.splitlines():
        if line.startswith("time by phase:"):
            for part in line.split(":", 1)[1].split(";")[0].split(","):
                name, _, sec = part.strip().rpartition(" ")
                phases[name] = float(sec.rstrip("s"))
    got["sets"] = phases.get("method prepare", 0.0) + phases.get("make set", 0.0) if phases else None
    return got


def write_yaml(path: Path, a, dilm_extra: dict | None = None) -> Path:
    path.write_text(json.dumps({"preset": "paper", "method_options": {
        "dilm": {**DILM_FEW_STEPS, "lm_steps": a.lm_steps, "sample_factor": a.sample_factor,
                 **({"lm_lr": a.lm_lr} if a.lm_lr else {}),
                 "gen_batch_size": a.gen_batch, **(dilm_extra or {})},
        "dilm_vanilla": {"lm_steps": a.lm_steps, "sample_factor": a.sample_factor, "ckpt_every": 1000,
                         **({"lm_lr": a.lm_lr} if a.lm_lr else {}),
                         "gen_batch_size": a.gen_batch}},
        "evaluator_options": {"icl": {"max_eval": 16, "max_demo_perplexity": 1e12}}}))
    return path


def task_steps(a, task: str, data: Path, icl: list[str], est_env: dict, dev_flops: float, limit: float):
    """(name, dilmbench run options, what was cut to fit this machine's memory) per step of one task. Gradient
    matching keeps the reference's batches unless the dry run puts the step above 80% of this machine's memory; then
    its synthetic and real batches are halved until it fits, and the step says so."""
    common = ["--preset", "paper", "--device", a.device, "--no-progress", "--overwrite", "always"]

    def base(yaml):
        return [*common, "--config", str(yaml), "--task", task, "--sets", "1", "--inits", "1"]

    yaml = write_yaml(a.work / f"rehearsal-{task}.yaml", a)
    yield "coresets", [*base(yaml), "--methods", "random,kcenters,herding", "--dpc", "20", "--steps", str(a.steps)], None
    yield "long", [*base(yaml), "--methods", f"file:{long_sets(data, a.work, task)}", "--steps", str(a.steps)], None
    yield "stage13", [*base(yaml), "--methods", "dilm_vanilla", "--dpc", "5", "--sets-only"], None
    from dilmbench.methods.dilm.method import PAPER

    syn, real = PAPER["syn_batch"], PAPER["real_batch"]
    cut = None
    while True:
        extra = {} if cut is None else {"syn_batch": syn, "real_batch": real}
        y = write_yaml(a.work / f"rehearsal-{task}-stage23.yaml", a, extra)
        args = [*base(y), "--methods", "dilm", "--dpc", "5", "--steps", str(a.steps)]
        peak = max((d["peak_bytes"] for d in estimate(["--out", "/nonexistent", *args], est_env, a.device,
                                                       dev_flops)["detail"]), default=0)
        if peak <= limit or syn <= 8:
            break
        syn, real = syn // 2, real // 2
        cut = f"syn_batch {syn}, real_batch {real} (estimated {peak / 2**30:.0f} GiB at the next larger)"
    yield "stage23", args, cut
    if task == a.tasks.split(",")[0]:
        yield "bert-large", [*base(yaml), "--methods", "random", "--dpc", "20", "--learners", "bert-large-uncased",
                             "--steps", str(a.steps)], None
        for m in icl:
            yield f"icl:{m}", [*base(yaml), "--methods", "random", "--dpc", "5", "--evaluator", "icl",
                               "--learners", m], None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True, type=Path, help="GLUE parquet layout (sst2/, qqp/, mnli/)")
    ap.add_argument("--tasks", default="sst2,qqp,mnli")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dilmbench-rehearsal"))
    ap.add_argument("--out", type=Path, default=None, help="also write the report here")
    ap.add_argument("--train-rows", type=int, default=3000)
    ap.add_argument("--eval-rows", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2, help="fine-tuning steps per run")
    ap.add_argument("--lm-steps", type=int, default=2)
    ap.add_argument("--sample-factor", type=int, default=2)
    ap.add_argument("--lm-lr", type=float, default=None,
                    help="stage 1's learning rate (default: the preset's). An untrained stand-in never writes a "
                         "pair's separator, so DiLM stops on pair tasks; some steps at 1e-3 teach it the layout")
    ap.add_argument("--gen-batch", type=int, default=64,
                    help="DiLM's sampling batch (the reference's 64; a CPU decodes 16 four times as fast)")
    ap.add_argument("--icl", default="gpt2-xl,facebook/opt-2.7b")
    ap.add_argument("--report-only", action="store_true",
                    help="render the report from the steps already run under --work, with today's cost model")
    ap.add_argument("--only", default=None, help="comma-separated steps to run (coresets,long,stage13,stage23,"
                                                      "bert-large,icl)")
    a = ap.parse_args()

    tasks = [t for t in a.tasks.split(",") if t]
    icl = [m for m in a.icl.split(",") if m]
    only = set(a.only.split(",")) if a.only else None
    a.work.mkdir(parents=True, exist_ok=True)
    data = slice_data(a.data_dir, a.work / "data", tasks, a.train_rows, a.eval_rows)
    import pandas as pd

    corpus = []
    for t in tasks:
        df = pd.read_parquet(next((data / t).glob("train-*.parquet")))
        corpus += [" ".join(str(x) for x in row) for row in df.drop(columns=[c for c in ("label", "idx") if c in df]).values]
    t0 = time.perf_counter()
    models = ["bert-base-uncased", "roberta-base", "xlnet-base-cased", "gpt2", "bert-large-uncased"] + icl
    # built in a process of their own: the driver stays small while the steps run (a 2.7B model's float32 weights
    # would otherwise stay in its memory)
    (a.work / "corpus.json").write_text(json.dumps(corpus))
    subprocess.run([sys.executable, "-c", "import json, sys; from dilmbench.rehearsal import build_standins; "
                    "build_standins(sys.argv[1].split(','), sys.argv[2], json.load(open(sys.argv[3])), "
                    "dtypes={'meta-llama/Llama-2-7b-hf': 'bfloat16'})", ",".join(models), str(a.work / "models"),
                    str(a.work / "corpus.json")], check=True)
    model_map = a.work / "models" / "model_map.json"
    build_s = time.perf_counter() - t0
    env = {**os.environ, "DILMBENCH_MODEL_MAP": str(model_map), "DILMBENCH_DATA_DIR": str(data),
           "DILMBENCH_CACHE": str(a.work / "cache"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    est_env = {k: env[k] for k in ("DILMBENCH_MODEL_MAP", "DILMBENCH_DATA_DIR", "DILMBENCH_CACHE", "HF_HUB_OFFLINE")}
    record = a.work / "steps.json"
    if a.report_only:
        saved = json.loads(record.read_text())
        steps, dev_flops, build_s = saved["steps"], saved["dev_flops"], saved["build_s"]
    else:
        # the paper preset's precision there: bfloat16 autocast on CUDA, float32 on a CPU
        dev_flops = matmul_flops(a.device, "bfloat16" if a.device.startswith("cuda") else "float32")
        # steps run before under --work are kept (and replaced by the ones this invocation runs): --only resumes
        steps = json.loads(record.read_text())["steps"] if record.is_file() else []
        limit = 0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        for task in tasks:
            for name, args, cut in task_steps(a, task, data, icl, est_env, dev_flops, limit):
                if only and name.split(":")[0] not in only:
                    continue
                out = a.work / "results" / task / slug(name)
                cmd = ["run", *args, "--out", str(out)]
                res = run_step(f"{task}-{name}", cmd, env, a.work)
                steps = [st for st in steps if (st["task"], st["step"]) != (task, name)]
                steps.append({"task": task, "step": name, "cmd": cmd, "cut": cut, "res": res,
                              "got": measured(out, task, res.get("log", ""))})
                record.write_text(json.dumps({"dev_flops": dev_flops, "build_s": build_s, "steps": steps}, indent=1))
    order = ["coresets", "long", "stage13", "stage23", "bert-large", "icl"]
    steps.sort(key=lambda st: (tasks.index(st["task"]) if st["task"] in tasks else 99,
                               order.index(st["step"].split(":")[0])))
    for st in steps:
        st["est"] = estimate(st["cmd"][1:], est_env, a.device, dev_flops)
    report = render(steps, a, dev_flops, build_s, models)
    print(report)
    if a.out:
        a.out.write_text(report + "\n")
    return 1 if any(s["res"]["rc"] for s in steps) else 0


def render(steps, a, dev_flops: float, build_s: float, models: list[str]) -> str:
    from tabulate import tabulate

    from dilmbench.cost import fmt_flops

    lines = [f"paper preset rehearsal on stand-ins (dilmbench.rehearsal): device {a.device}, "
             f"{os.environ.get('OMP_NUM_THREADS', 'default')} threads; measured matmul {dev_flops / 1e9:,.0f} GFLOP/s "
             f"({'bfloat16' if a.device.startswith('cuda') else 'float32'}, 4096x768x3072) used as the dry run's device FLOP/s at 100% utilisation",
             f"stand-ins built in {build_s:.0f} s: {', '.join(models)}",
             f"data: train cut to {a.train_rows} rows, evaluation to {a.eval_rows}; fine-tuning {a.steps} steps a run; "
             f"DiLM {a.lm_steps} LM steps, 1 outer loop x 2 matching updates, a sample pool of 64 per class, "
             f"{a.sample_factor} samples per kept text, sampling in batches of {a.gen_batch}",
             ""]
    rows = []
    for s in steps:
        res, est, got = s["res"], s["est"], s["got"]
        det = est["detail"]
        kinds = {"train": [], "evaluate": [], "prompt": [], "stage 1": [], "stage 2": [], "sets": []}
        for d in det:
            f = d["flops"] * d.get("count", 1)
            if d["per"] == "run":
                kinds[d["stage"]].append(f)
            elif d["stage"].startswith("stage 1"):
                kinds["stage 1"].append(f)
            elif d["stage"].startswith("stage 2"):
                kinds["stage 2"].append(f)
            else:
                kinds["sets"].append(f)
        # the sets' phase (method prepare + make set) holds the DiLM stages that ran in this step; the stage23 step
        # loads stage 1 from the stage13 step's checkpoint (its sets still record stage 1's seconds)
        reused_stage1 = s["step"] == "stage23"
        sets_s = got["sets"]
        if sets_s is not None:
            sets_s -= (0.0 if reused_stage1 else got["stage 1"] or 0.0) + (got["stage 2"] or 0.0)
        seconds = {"train": got["train"], "evaluate": got["evaluate"], "prompt": got["prompt"],
                   "stage 1": got["stage 1"], "stage 2": got["stage 2"], "sets": sets_s}
        label = {"train": f"fine-tune steps ({got['runs']} runs)", "evaluate": "evaluation passes",
                 "prompt": "ICL prompts", "stage 1": "DiLM stage 1 (LM training)",
                 "stage 2": "DiLM stage 2 (gradient matching)",
                 "sets": "making sets (pool embedding / stage 3 / selection)"}
        for kind, fl in kinds.items():
            if not fl or (kind == "stage 1" and reused_stage1):
                continue
            flops = float(np.sum(fl))
            est_s = flops / dev_flops
            m = seconds[kind]
            rows.append([s["task"], s["step"], label[kind], fmt_flops(flops), f"{est_s:,.1f}",
                         "-" if m is None else f"{m:,.1f}", "-" if not m or not est_s else f"{m / est_s:.2f}"])
        peak_est = max((d["peak_bytes"] for d in det), default=0)
        if s.get("cut"):
            rows.append([s["task"], s["step"], f"(cut to fit this machine: {s['cut']})", "", "", "", ""])
        rows.append([s["task"], s["step"], "process: " + ("ok" if not res["rc"] else "FAILED"), "",
                     f"{peak_est / 2**30:.1f} GiB", f"{res.get('peak_rss_bytes', 0) / 2**30:.1f} GiB",
                     f"wall {res['outer_wall_s']:.0f} s"])
    lines.append("seconds estimated (FLOPs / measured matmul FLOP/s) and measured, per kind of work in each step; "
                 "per process, the dry run's peak memory estimate beside the process's peak RSS (which adds Python, "
                 "torch and the data, ~1 GiB)")
    lines.append(tabulate(rows, headers=["task", "step", "work", "FLOPs", "estimate", "measured", "measured / est"],
                          tablefmt="simple"))
    failed = [s for s in steps if s["res"]["rc"]]
    lines.append("")
    lines.append(f"{len(steps) - len(failed)} of {len(steps)} steps ran" + (
        "; failed: " + ", ".join(f"{s['task']} {s['step']}: {(s['res'].get('error') or s['res']['log']).strip().splitlines()[-1]}"
                                 for s in failed) if failed else ""))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
