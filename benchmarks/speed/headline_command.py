"""The design's headline command (or, with --job readme, the README's main job) from an empty dilmbench cache, as a
new user types it, timed per stage:

    dilmbench run --preset quick --methods dilm,herding --task sst2
    dilmbench run --preset quick --methods random,kcenters,herding --task sst2 && dilmbench table    (--job readme)

(the models themselves come from the Hugging Face cache; dilmbench's own cache, which holds the pool's embeddings
and DiLM's trained generators, starts empty, and so does torch.compile's cache of the fast path's kernels). Prints the wall time, the runner's time by phase, DiLM's stage 1 (LM)
and stage 2 (gradient matching) seconds as recorded in the set it made, and the two scores.

Usage: HF_HUB_OFFLINE=1 python benchmarks/speed/headline_command.py [--job headline|readme] [--threads 2] [--keep DIR]
Output committed: results/benchmarks/headline_command.txt, results/benchmarks/readme_main_job.txt
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

JOBS = {  # the design's headline command, and the README's main job (its first line, less the install)
    "headline": ["dilmbench", "run", "--preset", "quick", "--methods", "dilm,herding", "--task", "sst2", "--no-progress"],
    "readme": ["dilmbench", "run", "--preset", "quick", "--methods", "random,kcenters,herding", "--task", "sst2",
               "--no-progress"],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="2")
    ap.add_argument("--job", choices=sorted(JOBS), default="headline")
    ap.add_argument("--keep", type=Path, help="keep the results folder here (default: a temporary one)")
    a = ap.parse_args()
    from dilmbench.provenance import git_commit

    with tempfile.TemporaryDirectory() as tmp:
        out = a.keep or Path(tmp) / "results"
        # dilmbench's cache and torch.compile's kernel cache (the fast path's optimizer kernels) both start empty
        env = {**os.environ, "DILMBENCH_CACHE": str(Path(tmp) / "empty-cache"), "OMP_NUM_THREADS": a.threads,
               "TORCHINDUCTOR_CACHE_DIR": str(Path(tmp) / "empty-inductor-cache")}
        # (an installed copy of dilmbench is no git checkout: then the commit of the checkout this script is in)
        commit = git_commit() or git_commit(Path(__file__).resolve().parent) or "unknown"

        command = JOBS[a.job]
        t0 = time.perf_counter()
        proc = subprocess.run(command + ["--out", str(out)], env=env, capture_output=True, text=True)
        if proc.returncode == 0 and a.job == "readme":  # the main job ends with the table
            table = subprocess.run(["dilmbench", "table", "--out", str(out)], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.exit(f"the command failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
        print(f"$ {' '.join(command)}   (empty dilmbench cache, {a.threads} threads, {os.cpu_count()} CPUs, "
              f"dilmbench {commit[:7]})")
        print(f"wall: {wall:.0f} s ({wall / 60:.1f} min)")
        for line in proc.stdout.strip().splitlines()[-2:]:
            print(f"  {line}")
        for meta in sorted(out.glob("sets/*/dilm/*/*.meta.json")):
            prov = json.loads(meta.read_text())["provenance"]
            stages = prov.get("generator_stage_seconds") or {}
            print(f"DiLM stage 1 (LM training): {stages.get('lm') or 0:.0f} s; stage 2 (gradient matching): "
                  f"{stages.get('gm') or 0:.0f} s; config cpu_bf16={prov['config'].get('cpu_bf16')}")
        if a.job == "readme":
            print(f"(run and table together; the table printed:)\n{table.stdout.rstrip()}")
        for run in sorted(out.glob("runs/**/*.json")):
            rec = json.loads(run.read_text())
            print(f"{rec['method']:<8} DPC {rec['dpc']}: score {100 * rec['score']:.1f}  "
                  f"(train {rec['timing_s']['train']:.0f} s, eval {rec['timing_s']['eval']:.1f} s, "
                  f"make set {rec['timing_s']['make_set']:.0f} s)")


if __name__ == "__main__":
    main()
