"""The `dilmbench` command: run, table, plot, report, validate, reproduce, ls."""
from __future__ import annotations

import sys

import click
from pathlib import Path

from .config import Overwrite, RunOptions
from .errors import DilmbenchError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DilmbenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="dilmbench")
def main():
    """dilmbench: which few labeled texts per class train a classifier best?"""


@main.command()
@click.option("--preset", default=None, help="paper (default) or quick.")
@click.option("--config", "config_file", type=click.Path(), help="YAML file of options (may name a preset).")
@click.option("--task", "--tasks", "tasks", help="Comma-separated tasks: sst2, qqp, mnli.")
@click.option("--methods", help="Comma-separated methods; file:PATH evaluates sets made elsewhere.")
@click.option("--dpc", help="Comma-separated data-per-class values, e.g. 5,10,20.")
@click.option("--sets", type=int, help="Text sets per (method, DPC).")
@click.option("--inits", type=int, help="Learner initialisations per set.")
@click.option("--learners", help="Comma-separated learner model ids for the chosen evaluator (fine-tuned learners, or ICL LLMs).")
@click.option("--steps", type=int, help="Fine-tuning steps (protocol: 200).")
@click.option("--evaluator", help="Evaluator name (default finetune).")
@click.option("--encoder", help="Encoder model id for embedding-based methods.")
@click.option("--pooling", type=click.Choice(["cls", "mean"]), help="Encoder pooling.")
@click.option("--embed-dtype", type=click.Choice(["float32", "bfloat16"]),
              help="Precision of the encoder pass (quick: bfloat16, paper: float32); part of a set's identity.")
@click.option("--data-dir", type=click.Path(), help="Local directory in the hub's parquet layout ($DILMBENCH_DATA_DIR).")
@click.option("--data-source", help="hub, embedded, or a directory.")
@click.option("--dev-size", type=int, help="Rows carved from train as the dev split.")
@click.option("--seed", type=int, help="Base seed from which every set and init seed is derived.")
@click.option("--device", help="auto (cuda, else cpu), cpu, cuda, cuda:1 ...")
@click.option("--score-on", "score_split", type=click.Choice(["eval", "dev"]),
              help="Split to score on: eval (the task's evaluation split; default) or dev (carved from train: use it "
                   "to choose hyperparameters; results go to runs-dev/).")
@click.option("--out", default="results", show_default=True, type=click.Path(), help="Output directory.")
@click.option("--overwrite", type=click.Choice([m.value for m in Overwrite]), default=Overwrite.ONLY_MISSING.value,
              show_default=True,
              help="only-missing: skip finished runs, redo truncated ones, and stop if a finished result in --out was made "
                   "under another configuration; changed: replace such results; always: redo every run; never: touch "
                   "no existing result.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Evaluate runs in this many local worker processes (sets are still made by this process).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process (or --workers processes); ray: Ray tasks (--ray-address, or a local Ray "
                   "started for the run with --workers CPUs).")
@click.option("--ray-address", default=None, help="An existing Ray cluster, e.g. 'auto' (with --executor ray).")
@click.option("--threads-per-worker", type=int, default=None,
              help="Torch threads per worker (default: CPU cores / workers).")
@click.option("--batch-runs", type=int, default=1, show_default=True,
              help="Hand the evaluator this many runs of one method, DPC and learner at once: finetune trains them as "
                   "one batched model when its recipe runs one padded batch per step (micro_batch_tokens 0, the CUDA "
                   "default), for GPUs; same results within its tested tolerance.")
@click.option("--sets-only", is_flag=True,
              help="Make and save the sets the grid's runs need (with their cards) and evaluate none; the same command "
                   "without it reuses them.")
@click.option("--shard", default=None,
              help="K/N: take every N-th set of the grid from the K-th (0-based), with its runs; N commands with "
                   "K = 0..N-1 (processes or machines, same --out or merged after) cover the grid once.")
@click.option("--skip-unfit", is_flag=True,
              help="Accept a grid without the runs whose set does not fit their learner (an ICL prompt longer than "
                   "the model's context): they are skipped and listed either way; without this flag the command then "
                   "exits non-zero after making the rest.")
@click.option("--plugin", "plugins", multiple=True, type=click.Path(), help="A Python file that registers methods/evaluators.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
@click.option("--dry-run", is_flag=True, help="Plan the grid and print what it would make and cost (FLOPs, memory, "
              "hours); run and write nothing.")
@click.option("--device-flops", type=float, default=None,
              help="With --dry-run: the device's FLOP/s for the hours column (default 312e12, an A100's bf16 peak).")
@click.option("--utilisation", type=float, default=None,
              help="With --dry-run: the share of --device-flops a run reaches (default 0.3).")
@click.option("--device-bandwidth", type=float, default=None,
              help="With --dry-run: memory bandwidth in bytes/s, for memory-bound decoding (default 2e12).")
@click.option("--step-floor", type=float, default=None,
              help="With --dry-run: the least seconds one sequential step (optimizer or decoding step) takes "
              "(default 0.02).")
@click.option("--device-memory", type=float, default=None,
              help="With --dry-run: device memory in GiB; runs and stages estimated above it are flagged (default 80).")
def run(preset, config_file, tasks, methods, dpc, sets, inits, learners, steps, evaluator, encoder, pooling, embed_dtype,
        data_dir,
        data_source, dev_size, seed, device, score_split, out, overwrite, workers, executor, ray_address,
        threads_per_worker, batch_runs, sets_only, shard, skip_unfit, plugins, no_progress, dry_run, device_flops,
        utilisation, device_bandwidth, step_floor, device_memory):
    """Run the grid and write one result file per run. --config may be a results folder's grid.yaml: then every run
    it declares is made into that folder (or --out)."""
    from .grid import declared_runs, entry_configs, is_grid_file
    from .registry import load_plugin

    for p in plugins:
        names = load_plugin(p)
        click.echo(f"plugin {p}: registered {', '.join(names)}", err=True)
    device_opts = (device_flops, utilisation, device_bandwidth, step_floor, device_memory)
    if not dry_run and any(v is not None for v in device_opts):
        raise DilmbenchError("--device-flops, --utilisation, --device-bandwidth, --step-floor and --device-memory go "
                             "with --dry-run")
    opts = RunOptions.from_params(click.get_current_context().params)
    if config_file and Path(config_file).is_file() and is_grid_file(config_file):
        given = opts.given()
        if given:
            raise DilmbenchError(f"{config_file} declares a grid: {given[0]} cannot change it from the command line "
                                 "(edit the file, or run without it)")
        if click.get_current_context().get_parameter_source("out").name == "DEFAULT":
            out = str(Path(config_file).parent)
        declared_runs(config_file)  # the declaration itself checked: no run declared twice, no given sets
        configs = entry_configs(config_file, data_dir or data_source, device)
    else:
        configs = [opts.config()]
    if len(configs) > 1:  # every entry's names and options checked before the first writes anything
        from .runner import Runner

        for cfg in configs:
            Runner(cfg, out).build()
    unfit = []
    for n, cfg in enumerate(configs, 1):
        if len(configs) > 1:
            click.echo(f"-- {config_file}: entry {n} of {len(configs)}: {', '.join(cfg['methods'])} on "
                       f"{', '.join(cfg['tasks'])}, DPC {', '.join(map(str, cfg['dpc']))}, {cfg['sets']} set(s) x "
                       f"{cfg['inits']} init(s)")
        unfit += _run_one(cfg, out, overwrite, workers, threads_per_worker, executor, ray_address, sets_only, shard,
                          batch_runs, no_progress, dry_run, device_opts)
    if unfit:
        for line in unfit:
            click.echo(f"not made (does not fit its learner): {line}", err=True)
        if not skip_unfit:
            raise DilmbenchError(f"{len(unfit)} run(s) not made because their set does not fit the learner (e.g. "
                                 f"{unfit[0]}); every other run was made; use a smaller DPC or another learner, or "
                                 "--skip-unfit to accept the grid without them")


def _run_one(cfg, out, overwrite, workers, threads_per_worker, executor, ray_address, sets_only, shard, batch_runs,
             no_progress, dry_run, device_opts) -> list[str]:
    """One grid made (or planned, with dry_run); -> the runs skipped because their set does not fit the learner."""
    import time

    from .runner import Runner

    t0 = time.perf_counter()
    runner = Runner(cfg, out, overwrite=overwrite, progress=not no_progress, workers=workers,
                    threads_per_worker=threads_per_worker, executor=executor, ray_address=ray_address,
                    sets_only=sets_only, shard=shard, batch_runs=batch_runs)
    if dry_run:
        from .dryrun import dry_run as plan_cost, make_device

        text, _ = plan_cost(runner, make_device(*device_opts))
        click.echo(text)
        return []
    counts = runner.run()
    from .record import runs_dir

    elapsed = time.perf_counter() - t0
    click.echo(f"done in {elapsed:.0f}s: {counts['done']} runs, {counts['skipped']} skipped, "
               f"{counts['sets_made']} sets made, {counts['sets_reused']} reused -> {out}/{runs_dir(cfg['score_split'])}"
               + (f"; --sets-only: {counts['not_evaluated']} runs not evaluated" if sets_only else "")
               + (f"; {counts['left_to_others']} left to another process on the same --out"
                  if counts.get("left_to_others") else "")
               + (f"; {counts['unfit']} not made (their set does not fit the learner)" if counts.get("unfit") else ""))
    if runner.phases:
        split = ", ".join(f"{k} {v:.0f}s" for k, v in sorted(runner.phases.items(), key=lambda kv: -kv[1]))
        click.echo(f"time by phase: {split}; loading and planning {max(0.0, elapsed - sum(runner.phases.values())):.0f}s")
    return runner.unfit


@main.command()
@click.option("--out", default=("results",), show_default=True, type=click.Path(), multiple=True,
              help="Directory holding runs/; give it several times to read several folders as one.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "latex", "csv"]), default="markdown", show_default=True)
@click.option("--reference", default=None, help="'paper' (DiLM's Table 1, stored under results/reference) or a CSV path.")
@click.option("--task", help="Only this task.")
@click.option("--evaluator", help="Only this evaluator.")
@click.option("--split", "split", type=click.Choice(["eval", "dev"]), default="eval", show_default=True,
              help="Scores on the evaluation split (runs/) or on the dev split (runs-dev/, from run --score-on dev).")
@click.option("--cost", is_flag=True, help="Also what each cell cost: set-making and evaluation seconds, the method's "
              "one-off preparation, and LLM calls and tokens per generated set.")
@click.option("--metric", default=None, help="Tabulate this recorded metric instead of the score (for example "
              "demo_perplexity or queries_per_s of the icl evaluator), as recorded, not in percent.")
@click.option("--cards", is_flag=True, help="Also the text sets' cards per method x DPC: label agreement with an "
              "independent judge, share memorised from train, mean words, distinct-2.")
@click.option("--robustness", is_flag=True, help="Instead of the table: per method its mean rank over the models that "
              "learned from its sets, its worst and best gain over random, and how far the models agree on the "
              "method ordering (Kendall's tau), with the runs behind each figure.")
@click.option("--dd-ranking", "dd_ranking", is_flag=True, help="Also DD-Ranking's two scores per method and cell: HLR "
              "(the full-data ceiling's mean minus the method's; needs `--methods full` results) and IOR (the method's "
              "mean minus random's).")
def table(out, fmt, reference, task, evaluator, split, cost, cards, metric, robustness, dd_ranking):
    """Print mean ± std per method x DPC (percent; std with ddof 0), with gain over random."""
    from .tables import build_table, data_notes, load_reference, load_results, render, with_metric

    if split == "dev" and reference:
        raise DilmbenchError("--reference compares with published evaluation-split numbers; not with --split dev")
    if len(out) > 1 and (cost or cards):
        raise DilmbenchError("--cost and --cards read one results folder: give --out once")
    import pandas as pd

    frames = [load_results(o, split) for o in out]
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    unreadable = [u for f in frames for u in f.attrs.get("unreadable", [])]
    out = out[0]
    if unreadable:
        click.echo(f"{len(unreadable)} result file(s) are truncated or not dilmbench results and are left out (e.g. "
                   f"{unreadable[0]}); rerun the same command to redo them", err=True)
    if task:
        df = df[df["task"] == task]
    if evaluator:
        df = df[df["evaluator"] == evaluator]
    if df.empty:
        raise DilmbenchError("no results match the filters")
    if metric and reference:
        raise DilmbenchError("--reference sets the paper's scores beside ours; it does not go with --metric")
    ref = load_reference(reference) if reference else None
    if robustness:
        from .tables import build_robustness

        if metric or reference:
            raise DilmbenchError("--robustness ranks methods by their scores; it does not go with --metric or --reference")
        per_method, agree, lines = build_robustness(df)
        click.echo("Per method, over every task x DPC x model (evaluator:learner) it was scored in; rank 1 = best in "
                   "its cell, gains in points over random's mean in the same cell:")
        click.echo(render(per_method, fmt))
        click.echo("\nAgreement between models on the method ordering (Kendall's tau per shared task x DPC, averaged; "
                   "1 = same order, -1 = reversed):")
        click.echo(render(agree.set_index("models"), fmt) if not agree.empty else
                   "no two models scored three or more methods in a shared cell")
        if lines:
            click.echo("\n" + "\n".join(lines))
        return
    if metric:
        df = with_metric(df, metric)
        click.echo(f"{metric} (mean ± std over runs, as recorded; runs without it left out):")
        click.echo(render(build_table(df, baseline=None, scale=1), fmt))
    else:
        click.echo(render(build_table(df, ref, dd_ranking=dd_ranking), fmt))
    notes = data_notes(df)  # what data each column was made on (a subset pool must not pass for GLUE)
    if fmt == "markdown":
        click.echo("\nData:\n" + "\n".join(f"- {n}" for n in notes))
    elif fmt == "latex":
        click.echo("\n".join(f"% {n}" for n in notes))
    else:
        click.echo("\n".join(f"data: {n}" for n in notes), err=True)
    if cost:
        from .tables import build_cost_table

        click.echo("\nCost per cell (seconds of wall time as recorded by each run):")
        click.echo(render(build_cost_table(out, df), fmt))
    if cards:
        from .tables import build_cards_table, load_cards

        card_df, missing = load_cards(out, df)
        click.echo("\nText-set cards (mean ± std over the sets; percent except words):")
        click.echo(render(build_cards_table(card_df), fmt) if not card_df.empty else "no set in these cells has a card")
        if missing:
            click.echo(f"{len(missing)} set(s) have no card (made before cards, e.g. {missing[0]}): rerun the same "
                       "`dilmbench run` command to add them")


@main.command()
@click.option("--out", default="results", show_default=True, type=click.Path(), help="Directory holding runs/.")
@click.option("--to", "to", default=None, type=click.Path(), help="Where the figures go (default: <out>/plots).")
@click.option("--reference", default=None, help="'paper' or a CSV: its curve dashed where a panel has one.")
@click.option("--split", "split", type=click.Choice(["eval", "dev"]), default="eval", show_default=True)
def plot(out, to, reference, split):
    """Accuracy against DPC per method with std error bars, the random baseline marked, one panel per task x
    learner: PNG and PDF."""
    from .plots import plot as draw
    from .tables import load_reference, load_results

    df = load_results(out, split)
    paths = draw(df, to or Path(out) / "plots", load_reference(reference) if reference else None)
    click.echo("wrote " + ", ".join(str(p) for p in paths))


@main.command()
@click.argument("results", default="results", type=click.Path())
@click.option("--out", "site", required=True, type=click.Path(), help="Folder for the page (index.html and figures).")
@click.option("--reference", default=None, help="'paper' or a CSV: its numbers in the table, dashed in the plot.")
@click.option("--split", "split", type=click.Choice(["eval", "dev"]), default="eval", show_default=True)
def report(results, site, reference, split):
    """One static HTML page for a results folder: table, plot, checks, set cards, provenance and cost per cell, and
    a browser of every text set's texts. Given a folder of results folders (results/), a site over all of them: a
    leaderboard per task, the robustness summary, accuracy against cost, and each folder's own page."""
    from .report import build_report
    from .site import build_site, is_site_root

    if is_site_root(Path(results)):
        click.echo(f"wrote {build_site(results, site, reference, split)}")
    else:
        click.echo(f"wrote {build_report(results, site, reference, split)}")


@main.command()
@click.argument("results", default="results", type=click.Path())
@click.option("--expect", default=None, help="The options of the `dilmbench run` command whose grid must be complete, "
              "e.g. \"--preset quick --methods random,herding --dpc 5,10,20 --sets 10\"; without it, the grid the "
              "results imply.")
@click.option("--json", "as_json", is_flag=True, help="The report as JSON.")
@click.option("--deep", is_flag=True, help="Also plan each run grid.yaml declares as `dilmbench run` would (loads the "
              "data) and name results made otherwise than declared (configuration, data, model snapshot).")
@click.option("--data-dir", type=click.Path(), help="With --deep: where the tasks' data lives ($DILMBENCH_DATA_DIR).")
def validate(results, expect, as_json, deep, data_dir):
    """Check a results folder as a whole: every file a complete result of the current schema, provenance complete,
    one configuration, one data and distinct seeds per cell, every text set there and unchanged, dev scores kept
    apart, and the grid complete (with a grid.yaml: every declared run there and made as its entry states today).
    Exit 0 when all holds, 1 with the list otherwise."""
    import json
    import shlex

    from .validate import render_report
    from .validate import validate as check

    grid = None
    if expect is not None:
        try:
            ctx = run.make_context("run", shlex.split(expect))
        except click.exceptions.ClickException as exc:
            raise DilmbenchError(f"--expect is not a valid `dilmbench run` command line: {exc.format_message()}") from exc
        try:
            grid = _expected_grid(RunOptions.from_params(ctx.params).config())
        except DilmbenchError as exc:
            raise DilmbenchError(f"--expect: {exc}") from exc
    report = check(results, grid)
    if deep:
        from .grid import check_configurations, grid_path

        if not grid_path(results).is_file():
            raise DilmbenchError(f"--deep checks a folder against its declaration; {results} has no grid.yaml")
        named = {p["path"] for p in report["problems"] if p["check"] == "declared"}  # said already, more exactly
        deep_problems = [p for p in check_configurations(results, data_dir) if p["path"] not in named]
        report["problems"] += deep_problems
        report["ok"] = report["ok"] and not deep_problems
        report["deep"] = True
    click.echo(json.dumps(report, indent=1) if as_json else render_report(report))
    if not report["ok"]:
        raise SystemExit(1)


def _expected_grid(cfg: dict) -> dict:
    """The runs a run config would write, as validate's ``expect`` (given sets, file:, are not predicted)."""
    from .config import build_evaluator

    ev = build_evaluator(cfg)
    methods = [m for m in cfg["methods"] if ":" not in m]
    return {"split": cfg.get("score_split", "eval"), "tasks": cfg["tasks"], "methods": methods,
            "evaluator": ev.name, "learners": ev.learners(), "dpc": cfg["dpc"], "sets": cfg["sets"],
            "inits": cfg["inits"]}


@main.command()
@click.argument("folder", type=click.Path())
@click.option("--sample", type=int, default=None, help="Re-run this many of the declared runs, drawn at random "
              "(default: every declared run that has a result).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draw.")
@click.option("--tolerance", type=float, default=0.5, show_default=True,
              help="Largest score difference, in points, still called reproduced.")
@click.option("--scratch", type=click.Path(), default=None,
              help="An empty folder for the re-runs, kept after (default: a temporary one, removed after).")
@click.option("--data-dir", type=click.Path(), help="Where the tasks' data lives ($DILMBENCH_DATA_DIR).")
@click.option("--device", help="auto (cuda, else cpu), cpu, cuda ...")
@click.option("--plugin", "plugins", multiple=True, type=click.Path(), help="A Python file that registers methods/evaluators.")
@click.option("--no-progress", is_flag=True, help="Hide progress bars.")
def reproduce(folder, sample, seed, tolerance, scratch, data_dir, device, plugins, no_progress):
    """Re-run declared runs of FOLDER (its grid.yaml) from nothing in a scratch folder, and say per run: identical,
    within tolerance, or different. Only generator-written sets (DiLM, ZeroGen, GOLD, S3) are taken from FOLDER.
    Writes FOLDER/reproduce.json; exits 1 when a run differs beyond the tolerance."""
    from .registry import load_plugin
    from .reproduce import render, reproduce as rerun

    for p in plugins:
        load_plugin(p)
    report = rerun(folder, sample, seed, tolerance, scratch, data_dir, device, progress=not no_progress,
                   log=lambda m: click.echo(m, err=True))
    click.echo(render(report))
    if not report["ok"]:
        raise SystemExit(1)


@main.command(name="ls")
@click.argument("what", required=False, type=click.Choice(["tasks", "methods", "evaluators", "presets"]))
@click.option("--plugin", "plugins", multiple=True, type=click.Path())
def ls_cmd(what, plugins):
    """List tasks, methods, evaluators and presets with their one-line docs."""
    from .config import PRESETS
    from .registry import EVALUATORS, METHODS, load_plugin
    from .tasks import TASKS

    for p in plugins:
        load_plugin(p)
    sections = {
        "tasks": lambda: [(n, TASKS[n].description) for n in TASKS.names()],
        "methods": lambda: [(n, METHODS.get(n).describe()) for n in METHODS.names()],
        "evaluators": lambda: [(n, EVALUATORS.get(n).describe()) for n in EVALUATORS.names()],
        "presets": lambda: [(n, p["description"]) for n, p in PRESETS.items()],
    }
    for name, rows in sections.items():
        if what and name != what:
            continue
        click.echo(f"{name}:")
        for n, doc in rows():
            click.echo(f"  {n:<16} {doc}")


if __name__ == "__main__":
    main()
