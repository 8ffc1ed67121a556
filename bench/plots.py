"""`dilmbench plot`: accuracy against DPC per method, one panel per task x evaluator/learner (and data, where a
task's results were made on more than one), error bars = std (ddof 0), the random baseline marked as a shaded band,
and the paper's curve dashed where a reference table has one for the panel. PNG and PDF, by matplotlib."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .tables import PART_SCORED, SUBSET, _short, summarize

BASELINE = "random"


def panels(df: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(title, summary rows) per panel, in a stable order."""
    s = summarize(df)
    if "data" not in s.columns:
        s["data"] = "unrecorded"
    several = s.groupby("task")["data"].transform("nunique") > 1
    notes = (df.groupby(["task", "data"])["data_note"].first().to_dict()
             if {"data", "data_note"} <= set(df.columns) else {})
    out = []
    keys = ["task", "evaluator", "learner", "data"]
    for (task, evaluator, learner, data), g in s.groupby(keys, sort=True):
        title = f"{task} / {evaluator}: {_short(learner)}"
        if several[g.index].any():
            title += f" [data {data}]"
        # what the table's data notes say, on the figure too: a subset pool is not the paper's setting
        note = str(notes.get((task, data), ""))
        flags = (["SUBSET data, not the paper's setting"] if note.startswith(SUBSET) else []) + \
                (["part of the evaluation split scored"] if PART_SCORED in note else [])
        if flags:
            title += "\n" + "; ".join(flags)
        out.append((title, g))
    return out


def plot(df: pd.DataFrame, to: str | Path, reference: pd.DataFrame | None = None, name: str = "accuracy_vs_dpc",
         columns: int = 3) -> list[Path]:
    """Draw every panel into one figure; write ``<to>/<name>.png`` and ``.pdf``; return the paths."""
    import matplotlib.pyplot as plt

    fig = figure(df, reference, columns)
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    paths = [to / f"{name}.png", to / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def figure(df: pd.DataFrame, reference: pd.DataFrame | None = None, columns: int = 3):
    """The matplotlib figure: one panel per task x evaluator/learner (x data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ps = panels(df)
    # a ceiling (the full data) is a level, drawn across the panel, not a point at its pool-sized DPC
    ceilings = set(df.loc[df["ceiling"], "method"]) if "ceiling" in df.columns else set()
    methods = sorted({m for _, g in ps for m in g["method"]} - ceilings, key=lambda m: (m != BASELINE, m))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    ncol = min(columns, len(ps))
    nrow = -(-len(ps) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.2 * ncol, 3.6 * nrow), squeeze=False)
    for ax in axes.flat[len(ps):]:
        ax.set_visible(False)
    for ax, (title, g) in zip(axes.flat, ps):
        for m, r in g[g["method"].isin(ceilings)].groupby("method"):
            ax.axhline(100 * r["mean"].iloc[0], color="0.2", ls="--", lw=1.2, label=f"{m} (ceiling)")
        g = g[~g["method"].isin(ceilings)]
        if g.empty:
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
            continue
        dpcs = sorted(g["dpc"].unique())
        shown = [m for m in methods if m in set(g["method"])]
        for i, m in enumerate(shown):
            # every DPC of the panel, NaN where this method has none, so that its line breaks there instead of
            # running through a value nobody measured
            r = g[g["method"] == m].set_index("dpc").reindex(dpcs).reset_index()
            # (each method's points a little apart on the log axis, so error bars do not hide one another)
            shift = 2 ** (0.04 * (i - (len(shown) - 1) / 2)) if m != BASELINE else 1.0
            x, y, e = r["dpc"].to_numpy() * shift, 100 * r["mean"].to_numpy(), 100 * r["std"].to_numpy()
            if m == BASELINE:  # the baseline every method is read against: a band, not just a line
                ax.fill_between(x, y - e, y + e, color="0.85", zorder=0, label=f"{m} ± std")
                ax.plot(x, y, color="0.35", lw=2, ls=":", marker="s", zorder=1, label=m)
            else:
                ax.errorbar(x, y, yerr=e, color=colours[m], marker="o", capsize=3, lw=1.5, label=m, zorder=2)
        if reference is not None:
            task, evaluator, learner = g["task"].iloc[0], g["evaluator"].iloc[0], _short(g["learner"].iloc[0])
            ref = reference[(reference["task"] == task) & (reference["evaluator"] == evaluator)
                            & (reference["learner"].map(lambda v: _short(str(v))) == learner)
                            & reference["dpc"].notna()]
            for m, r in ref.groupby("method"):
                r = r.sort_values("dpc")
                ax.plot(r["dpc"], r["mean"], ls="--", lw=1.2, marker="x", color=colours.get(m, "0.2"),
                        label=f"paper: {m}")
        ax.set_title(title, fontsize=10)
        ax.set_xscale("log", base=2)
        ax.set_xticks(dpcs)
        ax.set_xticklabels([str(d) for d in dpcs])
        ax.set_xlabel("texts per class (DPC)")
        ax.set_ylabel("score (%)")
        ax.grid(alpha=0.3)
        # beside the panel, not on it: with nine methods a legend inside covers the DPC-20 points
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig
