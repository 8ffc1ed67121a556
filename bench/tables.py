"""Tables from result files: mean ± std (ddof 0) per method x DPC, one column group per task / learner."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DilmbenchError

FORMATS = {"markdown": "github", "latex": "latex_booktabs", "csv": None}


def read_records(out: str | Path, split: str = "eval") -> tuple[list[dict], list[str]]:
    """Every complete result under ``out`` for ``split`` (as its JSON), and the paths of the files that are not one."""
    from .record import read_runs

    records, unreadable = read_runs(out, split)
    return [r.raw for r in records], unreadable


def load_results(out: str | Path, split: str = "eval", read: tuple[list[dict], list[str]] | None = None) -> pd.DataFrame:
    """One row per result; ``read``: read_records()'s answer, when the caller has read the folder already."""
    from .record import runs_dir

    root = Path(out) / runs_dir(split)
    records, unreadable = read_records(out, split) if read is None else read
    rows = [{"task": rec["task"], "method": rec["method"], "dpc": rec["dpc"], "evaluator": rec["evaluator"],
             "learner": rec["learner"], "set": rec["set_index"], "init": rec["init_index"],
             "score": rec["score"], "metrics": rec.get("metrics") or {}, "set_path": rec.get("textset", {}).get("path"),
             "data": _data_label(rec), "data_note": _data_note(rec), "cell_config": _cell_config(rec),
             "timing": rec.get("timing_s") or {}, "chosen_with": chosen_with(rec),
             "ceiling": _is_ceiling(rec.get("method_name", rec["method"]))}
            for rec in records]
    if not rows:
        if unreadable:
            raise DilmbenchError(f"no readable results under '{root}': {len(unreadable)} file(s) are truncated or not "
                                 f"dilmbench results (e.g. {unreadable[0]}); rerun the same command to redo them")
        raise DilmbenchError(f"no results under '{root}': run `dilmbench run` first (or pass --out)")
    df = pd.DataFrame(rows)
    df.attrs["unreadable"] = unreadable
    return df


def _is_ceiling(method_name: str) -> bool:
    """Whether the method's set is a ceiling (the full training data), shown in every DPC column of its learner rather
    than as a DPC of its own: said by the method class (``ceiling = True``), found through the registry."""
    from .registry import METHODS

    try:
        return bool(getattr(METHODS.get(method_name), "ceiling", False))
    except DilmbenchError:  # a plugin's method not loaded here: an ordinary row
        return False


CHOOSER_KEYS = ("learner", "encoder", "reward_model", "generator")


def chosen_with(rec: dict) -> str:
    """The models that chose or wrote a run's set (its encoder, a method's own learner, reward model or writer),
    comma-separated: what the robustness summary compares a winning learner with."""
    models = set()
    enc = ((rec.get("models") or {}).get("encoder") or {}).get("id")
    if enc:
        models.add(enc)
    cfg = (((rec.get("config") or {}).get("set_identity") or {}).get("method") or {}).get("config") or {}
    models.update(v for k, v in cfg.items() if k in CHOOSER_KEYS and isinstance(v, str) and v)
    return ",".join(sorted(models))


def _cell_config(rec: dict) -> str:
    from .validate import cell_configuration

    return cell_configuration(rec)


def _scored_part(rec: dict) -> tuple[int, int, str] | None:
    """(examples scored, rows of the split, split name) when a run scored only part of its split (an evaluator's
    max_eval), else None: such a run is never averaged with runs scored on the whole split."""
    n = (rec.get("metrics") or {}).get("eval_examples")
    on = rec.get("scored_on") or {}
    if isinstance(n, int) and isinstance(on.get("size"), int) and n < on["size"]:
        return n, on["size"], on.get("name") or on.get("split") or "evaluation"
    return None


def _data_label(rec: dict) -> str:
    from .record import data_id as result_data_id

    label = result_data_id(rec) or "unrecorded"
    part = _scored_part(rec)
    return label if part is None else f"{label}, first {part[0]:,}"


# the data notes' markers (plots read them to flag a panel)
SUBSET = "SUBSET, not the paper's setting"
PART_SCORED = "SCORED ON THE FIRST"


def _data_note(rec: dict) -> str:
    """One line on what data a result was made on: its fingerprint, rows, and whether it is the complete split."""
    part = _scored_part(rec)
    scored = "" if part is None else f"; {PART_SCORED} {part[0]:,} OF {part[1]:,} {part[2]} rows only"
    return _whole_data_note(rec) + scored


def _whole_data_note(rec: dict) -> str:
    data = rec.get("data") or {}
    fp = data.get("fingerprint")
    if not fp:
        return "no data fingerprint recorded (made before results recorded one)"
    rows = f"pool {fp['pool']['rows']:,}, dev {fp['dev']['rows']:,}, {data.get('eval_split', 'eval')} {fp['eval']['rows']:,}"
    if fp.get("complete") is False:
        (tr, tr_full), (ev, ev_full) = fp["of_full"]["train"], fp["of_full"]["eval"]
        return (f"{SUBSET}: train {tr:,} of {tr_full:,} rows, {data.get('eval_split', 'eval')} "
                f"{ev:,} of {ev_full:,} ({rows}; source {data.get('source')})")
    whole = "complete train and evaluation splits" if fp.get("complete") else "sizes of the full splits unknown"
    return f"{whole} ({rows}; source {data.get('source')})"


def data_notes(df: pd.DataFrame) -> list[str]:
    """'task data [id]: what it is; score: what the number is', one line per data a table's results were made on."""
    from .tasks import TASKS

    out = []
    for (task, data), g in df.groupby(["task", "data"]):
        score = f"; score: {TASKS[task].score_words}" if task in TASKS else ""
        out.append(f"{task} data {data}: {g['data_note'].iloc[0]}{score}")
    return out


REFERENCE_COLUMNS = ["task", "learner", "method", "dpc", "mean", "std"]
PAPER_TABLES = ("dilm_paper_tables.csv", "condenselm_paper_tables.csv")  # what --reference paper shows


def load_reference(name: str) -> pd.DataFrame:
    """'paper' (DiLM's Tables 1-3, shipped with the package) or the path of a CSV with the same columns (percent;
    ``evaluator`` optional, default finetune)."""
    from importlib.resources import files

    if name == "paper":  # every published table shipped: DiLM's, and CondenseLM's rows for its own method
        ref = files("dilmbench.reference")
        df = pd.concat([pd.read_csv((ref / f).open(), comment="#") for f in PAPER_TABLES], ignore_index=True)
    else:
        if not Path(name).is_file():
            raise DilmbenchError(f"reference '{name}' is neither 'paper' nor a CSV file")
        df = pd.read_csv(name, comment="#")
    missing = [c for c in REFERENCE_COLUMNS if c not in df.columns]
    if missing:
        raise DilmbenchError(f"reference table lacks column(s) {missing}; needs {REFERENCE_COLUMNS}")
    if "evaluator" not in df.columns:
        df["evaluator"] = "finetune"
    return df


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """mean, std (ddof 0) and n per cell; runs made on different data (fingerprints) are never one cell."""
    keys = ["task", "evaluator", "learner", "method", "dpc"] + (["data"] if "data" in df.columns else [])
    g = df.groupby(keys)
    out = g["score"].agg(mean="mean", std=lambda s: float(s.std(ddof=0)), n="count")
    # more than one configuration in a cell (a grid half rerun under a new setting): shown, never silent
    out["configs"] = g["cell_config"].nunique() if "cell_config" in df.columns else 1
    return out.reset_index()


def _short(model: str) -> str:
    return model.split("/")[-1]


def with_metric(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The results with ``score`` replaced by the recorded metric ``metric`` (runs that lack it are dropped)."""
    def is_number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    values = df["metrics"].map(lambda m: m.get(metric) if isinstance(m, dict) else None)
    numeric = values.map(is_number)
    if not numeric.any():
        known = sorted({k for m in df["metrics"] if isinstance(m, dict) for k, v in m.items() if is_number(v)})
        raise DilmbenchError(f"no result records a numeric metric '{metric}'; these do: {', '.join(known) or 'none'}")
    out = df[numeric].copy()
    out["score"] = values[numeric].astype(float)
    return out


def build_table(df: pd.DataFrame, reference: pd.DataFrame | None = None, baseline: str | None = "random",
                scale: float = 100, dd_ranking: bool = False) -> pd.DataFrame:
    """Rows: methods (then gain over the baseline, then the paper's numbers); columns: task/learner/DPC. ``scale``:
    100 shows scores as percent; 1 shows a metric as recorded (``baseline=None``: no gain rows). A ceiling method's
    results (the full data) fill every DPC column of their task and learner. ``dd_ranking``: DD-Ranking's two scores
    per method and column, HLR (hard-label recovery: the ceiling's mean minus the method's; lower is better) and IOR
    (improvement over random: the method's mean minus random's)."""
    if "ceiling" in df.columns and df["ceiling"].any():
        return _with_ceiling(df, reference, baseline, scale, dd_ranking)
    if dd_ranking:
        raise DilmbenchError("--dd-ranking needs full-data results (method 'full') beside the sets, for HLR")
    return _build_table(df, reference, baseline, scale)


def _with_ceiling(df, reference, baseline, scale, dd_ranking) -> pd.DataFrame:
    """The table of the ordinary results with the ceiling's row first, in every column of its task x learner (a column
    of its own where no set was scored there); then with dd_ranking the HLR rows."""
    ceil = summarize(df[df["ceiling"]])
    rest = df[~df["ceiling"]]
    table = _build_table(rest, reference, baseline, scale) if not rest.empty else pd.DataFrame()
    means = summarize(rest) if not rest.empty else ceil.iloc[:0]
    several = rest["evaluator"].nunique() > 1
    ceiling_rows, hlr_rows = [], []
    for _, c in ceil.iterrows():
        label = f"{c['method']} (ceiling)"
        prefix = f"{c['task']} / " + (f"{c['evaluator']}:" if several else "") + _short(c["learner"])
        cols = [col for col in table.columns if col.startswith(prefix + " / DPC ")] or [prefix + " / full data"]
        for col in cols:
            if col not in table.columns:
                table[col] = "–"
        if label not in table.index:
            table.loc[label] = "–"
            ceiling_rows.append(label)
        for col in cols:
            table.loc[label, col] = f"{scale * c['mean']:.1f} ± {scale * c['std']:.1f} (n={c['n']})"
        if not dd_ranking:
            continue
        same = means[(means["task"] == c["task"]) & (means["evaluator"] == c["evaluator"])
                     & (means["learner"] == c["learner"])]
        for _, m in same.iterrows():
            row, col = f"{m['method']}: HLR (ceiling − it)", f"{prefix} / DPC {m['dpc']}"
            if col not in table.columns:
                continue
            if row not in table.index:
                table.loc[row] = "–"
                hlr_rows.append(row)
            table.loc[row, col] = f"{scale * (c['mean'] - m['mean']):.1f}"
    table = table.fillna("–")
    order = ceiling_rows + [r for r in table.index if r not in ceiling_rows and r not in hlr_rows] + sorted(hlr_rows)
    table = table.reindex(index=order)
    if dd_ranking and baseline:
        table = table.rename(index=lambda r: r.replace(f" − {baseline}", f": IOR (it − {baseline})")
                             if r.endswith(f" − {baseline}") else r)
    table.index.name = "method"
    return table


def _build_table(df: pd.DataFrame, reference: pd.DataFrame | None, baseline: str | None, scale: float) -> pd.DataFrame:
    s = summarize(df)
    learner = s["learner"].map(_short)
    if s["evaluator"].nunique() > 1:  # the same model may be fine-tuned and prompted: keep the columns apart
        learner = s["evaluator"] + ":" + learner
    task = s["task"]
    if "data" in s.columns:  # a task whose results were made on more than one data gets a column group per data
        several = s.groupby("task")["data"].transform("nunique") > 1
        task = task.where(~several, task + " [data " + s["data"] + "]")
    s["column"] = task + " / " + learner + " / DPC " + s["dpc"].astype(str)
    keys = {c: (t, e, _short(str(l)), int(d)) for c, t, e, l, d in
            zip(s["column"], s["task"], s["evaluator"], s["learner"], s["dpc"])}
    digits = 2 if scale == 1 else 1  # a metric as recorded keeps two decimals; percent, one
    s["cell"] = [f"{scale * m:.{digits}f} ± {scale * sd:.{digits}f} (n={n})" + (f" MIXED: {k} configurations" if k > 1 else "")
                 for m, sd, n, k in zip(s["mean"], s["std"], s["n"], s["configs"])]
    order = s.sort_values(["task", "evaluator", "learner", "dpc"])["column"].drop_duplicates().tolist()
    table = s.pivot_table(index="method", columns="column", values="cell", aggfunc="first")
    methods = sorted(table.index, key=lambda m: (m != baseline, m))
    table = table.reindex(index=methods, columns=order).fillna("–")
    means = s.pivot_table(index="method", columns="column", values="mean", aggfunc="first")
    if baseline in means.index:
        for m in methods:
            if m == baseline:
                continue
            gain = (means.loc[m] - means.loc[baseline]) * 100
            table.loc[f"{m} − {baseline}"] = [f"{gain[c]:+.1f}" if c in gain and pd.notna(gain[c]) else "–" for c in order]
    if reference is not None:
        # the paper's cell where task, evaluator, learner, method row and DPC all match ours; nothing elsewhere
        for _, r in reference.iterrows():
            # (a row without DPC, such as the paper's full-data learner, belongs to every DPC of its learner)
            row = f"paper: {r['method']}"
            key = (r["task"], r["evaluator"], _short(str(r["learner"])))
            for c in order:
                if keys[c][:3] == key and (pd.isna(r["dpc"]) or keys[c][3] == int(r["dpc"])):
                    if row not in table.index:
                        table.loc[row] = ["–"] * len(order)
                    table.loc[row, c] = f"{r['mean']:.1f}" + ("" if pd.isna(r["std"]) else f" ± {r['std']:.1f}")
    table.index.name = "method"
    return table


def render(table: pd.DataFrame, fmt: str = "markdown") -> str:
    if fmt not in FORMATS:
        raise DilmbenchError(f"unknown table format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return table.to_csv()
    from tabulate import tabulate

    if fmt == "latex":  # tabulate escapes cells: write placeholders, then LaTeX's own plus-minus and minus
        marks = {"±": ("PLUSMINUSMARK", r"$\pm$"), "−": ("MINUSMARK", "$-$"), "–": ("NOVALUEMARK", "--")}
        t = table.reset_index()
        t.columns = [_marked(c, marks) for c in t.columns]
        t = t.map(lambda v: _marked(v, marks) if isinstance(v, str) else v)
        out = tabulate(t, headers="keys", tablefmt=FORMATS[fmt], showindex=False)
        for mark, latex in marks.values():
            out = out.replace(mark, latex)
        return out
    return tabulate(table.reset_index(), headers="keys", tablefmt=FORMATS[fmt], showindex=False)


def _marked(text, marks) -> str:
    text = str(text)
    for char, (mark, _) in marks.items():
        text = text.replace(char, mark)
    return text


def results_json(df: pd.DataFrame) -> str:
    return json.dumps(summarize(df).to_dict(orient="records"), indent=1)


CARD_COLUMNS = {"label_agreement": "judge agrees %", "memorised": "memorised %", "mean_words": "words",
                "distinct_2": "distinct-2 %", "eval_overlap": "eval overlap %",
                "near_copies_of_eval": "eval near-copies %"}
CARD_SCALE = {k: 1 if k == "mean_words" else 100 for k in CARD_COLUMNS}  # shown as words, else percent


def load_cards(out: str | Path, results: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The cards of the sets that the given results were scored on -> (one row per set, sets without a card)."""
    rows, missing = [], []
    keys = results.dropna(subset=["set_path"]).drop_duplicates(["task", "method", "dpc", "set_path"])
    for _, r in keys.iterrows():
        from .textset import meta_path

        path = Path(out) / r["set_path"]
        try:
            card = json.loads(meta_path(path).read_text()).get("card")
        except (OSError, ValueError):
            card = None
        if card is None:
            missing.append(str(path))
            continue
        # (a card of an older version lacks the fields added since: shown as "–" until a run of the folder adds them)
        rows.append({"task": r["task"], "method": r["method"], "dpc": r["dpc"],
                     **{k: card.get(k, float("nan")) for k in CARD_COLUMNS}})
    return pd.DataFrame(rows), missing


def build_cards_table(cards: pd.DataFrame) -> pd.DataFrame:
    """Rows: task / method / DPC; columns: each card field as mean ± std over the cell's sets."""
    out = []
    for (task, method, dpc), g in cards.groupby(["task", "method", "dpc"]):
        row = {"task": task, "method": method, "dpc": dpc, "sets": len(g)}
        for k, name in CARD_COLUMNS.items():
            v = g[k].dropna()
            row[name] = (f"{CARD_SCALE[k] * v.mean():.1f} ± {CARD_SCALE[k] * v.std(ddof=0):.1f}" if len(v) == len(g)
                         else "–")
        out.append(row)
    return pd.DataFrame(out).set_index("task")


def cost_cells(out: str | Path, results: pd.DataFrame) -> pd.DataFrame:
    """What each cell cost, as numbers (NaN where nothing records it), per task / method / DPC: runs, seconds to make a
    set (mean over sets, each from the run that made it), the method's one-off preparation in the process that made
    the runs (training, or only loading a cached generator: the largest recorded), the training time of a generator
    the sets record (DiLM's stages; ``generator_partly_unknown`` where a stage trained before stage times were kept),
    seconds per evaluation run, and for generated sets the mean LLM calls, tokens and cached texts per set."""
    from .record import timing_rollup
    from .textset import meta_path

    nan = float("nan")
    rows = []
    for (task, method, dpc), g in results.groupby(["task", "method", "dpc"]):
        sets = g.dropna(subset=["set_path"]).drop_duplicates("set_path")
        calls, tokens, cached, trained = [], [], [], []
        for rel in sets["set_path"]:
            try:
                prov = json.loads(meta_path(Path(out) / rel).read_text()).get("provenance", {})
            except (OSError, ValueError):
                prov = {}
            cost = prov.get("cost")
            stages = prov.get("generator_stage_seconds") or {}
            if stages:  # a stage trained before stage times were kept is None
                known = sum(v for v in stages.values() if v is not None)
                trained.append((known, any(v is None for v in stages.values())))
            if cost:
                calls.append(cost.get("llm_calls", 0))
                tokens.append(cost.get("tokens", 0))
                cached.append(cost.get("cached", 0))
        cost = timing_rollup([(path if isinstance(path, str) else None, timing)
                              for path, timing in zip(g["set_path"], g["timing"])])

        def number(v):
            return nan if v is None else float(v)

        rows.append({"task": task, "method": method, "dpc": dpc, "runs": len(g),
                     "make_set_s": number(cost["make_set_s"]), "method_prepare_s": number(cost["method_prepare_s"]),
                     "generator_trained_s": max(trained)[0] if trained else nan,
                     "generator_partly_unknown": bool(trained) and max(trained)[1],
                     "evaluate_s": number(cost["evaluate_s"]),
                     "llm_calls": float(np.mean(calls)) if calls else nan,
                     "tokens": float(np.mean(tokens)) if tokens else nan,
                     "cached": float(np.mean(cached)) if cached else nan})
    return pd.DataFrame(rows)


def build_cost_table(out: str | Path, results: pd.DataFrame) -> pd.DataFrame:
    """``cost_cells`` as the table prints it: "–" where nothing is recorded, a generator's training "+ ?" where a
    stage's time is unknown."""
    def shown(v, digits: int):
        return "–" if pd.isna(v) else round(v, digits)

    rows = []
    for _, c in cost_cells(out, results).iterrows():
        rows.append({"task": c["task"], "method": c["method"], "dpc": c["dpc"], "runs": c["runs"],
                     "set s (mean)": shown(c["make_set_s"], 1),
                     "prepare s": shown(c["method_prepare_s"], 0),
                     "generator trained s": "–" if pd.isna(c["generator_trained_s"]) else
                     f"{c['generator_trained_s']:.0f}" + (" + ?" if c["generator_partly_unknown"] else ""),
                     "eval s / run": shown(c["evaluate_s"], 1),
                     "LLM calls / set": "–" if pd.isna(c["llm_calls"]) else round(c["llm_calls"], 1),
                     "tokens / set": "–" if pd.isna(c["tokens"]) else round(c["tokens"], 0),
                     "cached texts / set": "–" if pd.isna(c["cached"]) else round(c["cached"], 1)})
    return pd.DataFrame(rows).set_index("task")


def build_robustness(df: pd.DataFrame, baseline: str = "random") -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """How a method's standing holds up when the model that learns from its sets changes.

    A context is a task x DPC (x data); in it each model (evaluator:learner) ranks the methods by mean score (1 = best,
    ties averaged). Per method: the contexts and models it was scored in, its mean rank over them, its worst and best
    gain over ``baseline`` (points, with where), its wins, and the runs behind it. Per pair of models: Kendall's tau of
    their method orderings in each shared context (methods both scored, at least 3), averaged, with the contexts and
    methods behind it. Then plain lines: a method that wins only where the learner is a model that chose or wrote its
    sets, and one that never beats ``baseline``. -> (per-method table, agreement table, lines)."""
    from scipy.stats import kendalltau

    if "ceiling" in df.columns:  # the full-data ceiling is not a contender
        df = df[~df["ceiling"]]
    s = summarize(df)
    s["model"] = s["evaluator"] + ":" + s["learner"].map(_short)
    ctx_cols = ["task", "dpc"] + (["data"] if "data" in s.columns else [])
    s["rank"] = s.groupby(ctx_cols + ["model"])["mean"].rank(ascending=False, method="average")
    s["n_methods"] = s.groupby(ctx_cols + ["model"])["method"].transform("count")
    choosers = df.groupby("method")["chosen_with"].agg(lambda v: set(",".join(v).split(",")) - {""})
    base = s[s["method"] == baseline].set_index(ctx_cols + ["model"])["mean"]
    rows, lines = [], []
    for method, g in s.groupby("method"):
        gains = []
        for _, r in g.iterrows():
            key = tuple(r[c] for c in ctx_cols) + (r["model"],)
            if method != baseline and key in base.index:
                gains.append((100 * (r["mean"] - base[key]), f"{r['model']} {r['task']} DPC {r['dpc']}"))
        wins = g[(g["rank"] == 1) & (g["n_methods"] > 1)]
        rows.append({"method": method, "models": g["model"].nunique(), "cells": len(g),
                     "mean rank": f"{g['rank'].mean():.2f} of {g['n_methods'].mean():.1f}",
                     f"worst gain over {baseline}": (f"{min(gains)[0]:+.1f} ({min(gains)[1]})" if gains else "–"),
                     f"best gain over {baseline}": (f"{max(gains)[0]:+.1f} ({max(gains)[1]})" if gains else "–"),
                     "wins": len(wins), "runs": int(g["n"].sum())})
        winners = set(wins["learner"])
        if winners and winners <= choosers.get(method, set()):
            others = sorted(set(g["model"]) - set(wins["model"]))
            lines.append(f"{method} wins only where the learner is a model that chose or wrote its sets "
                         f"({', '.join(sorted(_short(m) for m in winners))})"
                         + (f"; not on {', '.join(others)}" if others else ""))
        if gains and max(gains)[0] <= 0:
            lines.append(f"{method} is at or below {baseline} on every model ({len(gains)} cells)")
    per_method = pd.DataFrame(rows).set_index("method")
    agree = []
    models = sorted(s["model"].unique())
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            taus, n_methods = [], []
            for _, ctx in s.groupby(ctx_cols):
                ma = ctx[ctx["model"] == a].set_index("method")["mean"]
                mb = ctx[ctx["model"] == b].set_index("method")["mean"]
                both = ma.index.intersection(mb.index)
                if len(both) >= 3:
                    tau = kendalltau(ma[both], mb[both]).statistic
                    if not np.isnan(tau):
                        taus.append(float(tau))
                        n_methods.append(len(both))
            if taus:
                agree.append({"models": f"{a} vs {b}", "Kendall tau": f"{np.mean(taus):+.2f}", "contexts": len(taus),
                              "methods per context": f"{min(n_methods)}-{max(n_methods)}"
                              if min(n_methods) != max(n_methods) else str(n_methods[0])})
    if s["model"].nunique() < 2:
        lines.insert(0, "one model only: ranks cannot be compared across learners (give several folders with --out, "
                        "or a grid with several learners)")
    return per_method, pd.DataFrame(agree), lines
