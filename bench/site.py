"""`dilmbench report results/ --out site/` over a folder of results folders: one static site for all of them.

``site/index.html`` holds a leaderboard per task (every folder's runs read as one table, a cell that two folders
both hold kept apart by the folder's name), the robustness summary across every model that learned from a method's
sets (`dilmbench table --robustness`), and an accuracy-against-cost figure: each cell's mean score against what one of
its sets cost to make, as the runs and sets record it. Each folder keeps its own page (the single-folder report)
under ``site/<folder>/``, linked from the index.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DilmbenchError


def results_folders(root: Path) -> list[Path]:
    """The results folders directly under ``root``: those holding runs/ (or runs-dev/)."""
    return sorted(p for p in root.iterdir() if p.is_dir() and ((p / "runs").is_dir() or (p / "runs-dev").is_dir()))


def is_site_root(path: Path) -> bool:
    """Whether ``path`` is a folder of results folders rather than a results folder itself."""
    path = Path(path)
    return path.is_dir() and not (path / "runs").is_dir() and bool(results_folders(path))


def _all_results(folders: list[Path], split: str) -> pd.DataFrame:
    """Every folder's results as one frame, with its folder; a (task, evaluator, learner, method, DPC) cell that
    several folders hold is labelled ``method [folder]`` so that two configurations never pool into one cell."""
    from .tables import load_results

    frames = []
    for f in folders:
        try:
            df = load_results(f, split)
        except DilmbenchError:  # a folder with no results on this split
            continue
        frames.append(df.assign(folder=f.name))
    if not frames:
        raise DilmbenchError(f"no results under any folder of '{folders[0].parent if folders else '?'}'")
    df = pd.concat(frames, ignore_index=True)
    keys = ["task", "evaluator", "learner", "method", "dpc"]
    shared = df.groupby(keys)["folder"].transform("nunique") > 1
    df.loc[shared, "method"] = df.loc[shared, "method"] + " [" + df.loc[shared, "folder"] + "]"
    return df


def cost_points(folders: list[Path], df: pd.DataFrame) -> pd.DataFrame:
    """Per task x evaluator:learner x method x DPC: mean score and seconds to make one set (its own making, plus
    the method's one-off work, its preparation or the generator's recorded training, shared over the method's sets
    of that task in that folder)."""
    from .tables import cost_cells

    rows = []
    for folder in folders:
        sub = df[df["folder"] == folder.name]
        if sub.empty:
            continue
        n_sets = sub.dropna(subset=["set_path"]).groupby(["task", "method"])["set_path"].nunique()
        for _, c in cost_cells(folder, sub).fillna({"make_set_s": 0.0, "method_prepare_s": 0.0,
                                                     "generator_trained_s": 0.0}).iterrows():
            once = max(c["method_prepare_s"], c["generator_trained_s"])
            per_set = c["make_set_s"] + once / max(1, int(n_sets.get((c["task"], c["method"]), 1)))
            cell = sub[(sub["task"] == c["task"]) & (sub["method"] == c["method"]) & (sub["dpc"] == c["dpc"])]
            for (evaluator, learner), g in cell.groupby(["evaluator", "learner"]):
                rows.append({"task": c["task"], "model": f"{evaluator}:{learner.split('/')[-1]}",
                             "method": c["method"], "dpc": int(c["dpc"]), "score": float(g["score"].mean()),
                             "set_seconds": per_set, "runs": len(g), "folder": folder.name})
    return pd.DataFrame(rows)


def cost_figure(points: pd.DataFrame, to: Path) -> Path:
    """Score against set-making seconds, one panel per task x model, one colour per method, DPC written beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(points.groupby(["task", "model"], sort=True))
    ncol = min(3, len(groups))
    nrow = -(-len(groups) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.2 * ncol, 3.8 * nrow), squeeze=False)
    for ax in axes.flat[len(groups):]:
        ax.set_visible(False)
    methods = sorted(points["method"].unique())
    colours = {m: plt.get_cmap("tab20")(i % 20) for i, m in enumerate(methods)}
    for ax, ((task, model), g) in zip(axes.flat, groups):
        for m, r in g.groupby("method"):
            x = np.maximum(r["set_seconds"].to_numpy(), 0.1)  # a set that cost nothing recorded sits at 0.1 s
            ax.scatter(x, 100 * r["score"], color=colours[m], label=m, s=22)
            for xi, yi, d in zip(x, 100 * r["score"], r["dpc"]):
                ax.annotate(str(d), (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_title(f"{task} / {model}", fontsize=10)
        ax.set_xlabel("seconds to make one set (log)")
        ax.set_ylabel("score (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    path = to / "accuracy_vs_cost.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def build_site(root: str | Path, site: str | Path, reference: str | None = None, split: str = "eval") -> Path:
    """Write ``site/index.html`` over every results folder in ``root`` and each folder's own page beside it."""
    from .report import CSS, _e, _table_html, build_report
    from .tables import build_robustness, build_table, load_reference
    from .textset import atomic_write_text

    root, site = Path(root), Path(site)
    folders = results_folders(root)
    if not folders:
        raise DilmbenchError(f"'{root}' holds no results folders (folders with runs/)")
    if site.resolve() in {root.resolve(), *(f.resolve() for f in folders)}:
        raise DilmbenchError("the site folder must not be a results folder")
    site.mkdir(parents=True, exist_ok=True)
    pages = []
    for f in folders:
        try:
            pages.append((f.name, build_report(f, site / f.name, reference, split)))
        except DilmbenchError as exc:  # a folder without results on this split: said on the index, not fatal
            pages.append((f.name, str(exc)))
    df = _all_results(folders, split)
    ref = load_reference(reference) if reference else None
    boards = []
    for task, g in df.groupby("task", sort=True):
        boards.append(f"<h3 id='board-{_e(task)}'>{_e(task)}</h3>" + _table_html(build_table(g, ref), f"board-{task}"))
    per_method, agree, lines = build_robustness(df)
    points = cost_points(folders, df)
    figure = cost_figure(points, site) if not points.empty else None
    links = "".join(f"<li><a href='{_e(name)}/index.html'>{_e(name)}</a></li>" if isinstance(page, Path) else
                    f"<li>{_e(name)}: <span class='bad'>{_e(page)}</span></li>" for name, page in pages)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dilmbench results: {_e(root.name)}</title>
<style>{CSS}</style></head><body>
<h1>dilmbench results: every folder of {_e(root.name)}</h1>
<p class="small">Built {datetime.now(timezone.utc).isoformat(timespec='seconds')} by <code>dilmbench report</code> from
{len(df)} runs in {len(folders)} folders ({_e(split)} split). Scores are percent, mean ± std (ddof 0) over sets x
inits; a cell two folders both hold is shown once per folder, as <i>method [folder]</i>.</p>
<h2 id="folders">Folders</h2>
<p class="small">Each folder's own page: its table, figure, checks, cards, provenance and set browser.</p>
<ul id="folder-links">{links}</ul>
<h2 id="leaderboard">Leaderboard per task</h2>
<p class="small">Columns: model (evaluator:learner when several evaluators) and DPC; rows: methods, then each one's
gain over random in points.</p>
{''.join(boards)}
<h2 id="robustness">Robustness across models</h2>
<p class="small">Per method, over every task x DPC x model it was scored in: mean rank (1 = best in its cell), worst
and best gain over random, wins, runs. Then Kendall's tau between models' method orderings.</p>
{_table_html(per_method, "robustness-table")}
{_table_html(agree.set_index("models"), "agreement-table") if not agree.empty else "<p>no two models share a cell</p>"}
<ul class="small">{''.join(f'<li>{_e(line)}</li>' for line in lines)}</ul>
<h2 id="cost">Accuracy against cost</h2>
{f'<img class="figure" src="{_e(figure.name)}" alt="score against seconds to make one set">' if figure else '<p>no recorded cost</p>'}
<p class="small">Each point a cell (method x DPC, written beside it): its mean score against the seconds one set took
to make, as recorded, with the method's one-off work (its preparation, or a generator's recorded training) shared
over its sets of the task in that folder; measured on whatever machine made the folder, so across folders a rough
guide.</p>
</body></html>
"""
    index = site / "index.html"
    atomic_write_text(index, page)
    return index
