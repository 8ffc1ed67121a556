"""`dilmbench report RESULTS --out SITE`: one static HTML page (no server, no script) for a results folder.

It shows the table (as `dilmbench table`, with what data each column was made on), the accuracy-vs-DPC figure
(`dilmbench plot`), what `dilmbench validate` says of the folder, each cell's provenance and cost, the set cards, and a
set browser with the actual texts and labels of every text set the results were scored on.
"""
from __future__ import annotations

import html
import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from .errors import DilmbenchError

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
img.figure { max-width: 100%; border: 1px solid #ddd; }
details { margin: 0.2em 0; } summary { cursor: pointer; }
.ok { color: #186a1e; } .bad { color: #a11; }
.small { font-size: 0.8em; color: #555; }
td.label { white-space: nowrap; font-weight: 600; }
"""


def _e(x) -> str:
    return html.escape(str(x))


def _table_html(df: pd.DataFrame, css_id: str) -> str:
    return df.to_html(escape=True, border=0, table_id=css_id)


def _cell_provenance(records: list[dict]) -> pd.DataFrame:
    from .record import timing_rollup
    from .validate import cell_configuration

    cells = defaultdict(list)
    for r in records:
        cells[(r["task"], r["evaluator"], r["learner"].split("/")[-1], r["method"], r["dpc"])].append(r)
    rows = []
    for (task, ev, learner, method, dpc), rs in sorted(cells.items(), key=lambda kv: str(kv[0])):
        cost = timing_rollup([((r.get("textset") or {}).get("path"), r.get("timing_s") or {}) for r in rs])
        revisions = sorted({str(r.get("models", {}).get("learner", {}).get("revision")) for r in rs})
        commits = sorted({str(r.get("environment", {}).get("git_commit"))[:10] for r in rs})
        data = sorted({str(((r.get("data") or {}).get("fingerprint") or {}).get("id", "unrecorded")) for r in rs})
        created = sorted(r.get("created_at", "") for r in rs)
        rows.append({
            "task": task, "evaluator": ev, "learner": learner, "method": method, "DPC": dpc, "runs": len(rs),
            "configurations": len({cell_configuration(r) for r in rs}),
            "config hash (first run)": rs[0].get("config_hash", "")[:12],
            "learner revision": ", ".join(x[:12] for x in revisions),
            "data": ", ".join(data), "git commit": ", ".join(commits),
            "preset": rs[0].get("config", {}).get("preset"),
            "fine-tune s / run": round(cost["evaluate_s"], 1) if cost["evaluate_s"] is not None else None,
            "set s / set": round(cost["make_set_s"], 1) if cost["make_set_s"] is not None else None,
            "method prepare s": round(cost["method_prepare_s"], 1) if cost["method_prepare_s"] is not None else None,
            "made": f"{created[0][:16]} … {created[-1][:16]}" if created and created[0] else "",
        })
    return pd.DataFrame(rows)


SHOWN_TEXTS = 500  # a set's texts shown in the page's set browser, at most


def _set_browser(out: Path, records: list[dict]) -> tuple[str, int]:
    """Every set the results were scored on, by task / method / DPC: its card, provenance and texts."""
    from .tasks import TASKS
    from .textset import load_textset, meta_path

    seen, groups = set(), defaultdict(list)
    for r in records:
        path = r.get("textset", {}).get("path")
        if not path or path in seen:
            continue
        seen.add(path)
        groups[(r["task"], r["method"], r["dpc"])].append((r.get("set_index", 0), path))
    parts, n_sets = [], 0
    for (task_name, method, dpc), sets in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        task = TASKS[task_name] if task_name in TASKS else None
        inner = []
        for set_index, rel in sorted(sets):
            file = out / rel
            try:
                ts = load_textset(file, task)
                meta = json.loads(meta_path(file).read_text()) if meta_path(file).is_file() else {}
            except Exception as exc:  # shown, not hidden: validate names it too
                inner.append(f"<p class='bad'>{_e(rel)}: cannot be read ({_e(exc)})</p>")
                continue
            card = meta.get("card")
            card_txt = (", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in card.items()
                                  if not isinstance(v, (dict, list)))
                        if card else "no card")
            shown = list(zip(ts.texts, ts.labels))[:SHOWN_TEXTS]  # (a full-data set is the whole pool)
            rows = "".join(
                f"<tr><td class='label'>{_e(task.label_names[y] if task else y)}</td>"
                + "".join(f"<td>{_e(t)}</td>" for t in texts) + "</tr>"
                for texts, y in sorted(shown, key=lambda ty: ty[1]))
            if len(ts) > SHOWN_TEXTS:
                rows += f"<tr><td colspan='{1 + len(ts.text_fields)}'>the first {SHOWN_TEXTS} of {len(ts):,} shown</td></tr>"
            header = "<tr><th>label</th>" + "".join(f"<th>{_e(f)}</th>" for f in ts.text_fields) + "</tr>"
            inner.append(
                f"<details class='set' data-set='{_e(rel)}'><summary>set {set_index:02d} — {len(ts)} texts "
                f"<span class='small'>({_e(rel)}; card: {_e(card_txt)})</span></summary>"
                f"<table class='set-texts'>{header}{rows}</table></details>")
            n_sets += 1
        parts.append(f"<details class='cell'><summary><b>{_e(task_name)} / {_e(method)} / DPC {dpc}</b> "
                     f"({len(sets)} sets)</summary>{''.join(inner)}</details>")
    return "\n".join(parts), n_sets


def _reproduction_html(results: Path) -> str:
    """The last `dilmbench reproduce` of the folder, in a line (and its runs under a fold)."""
    from .reproduce import last_reproduction, render

    rep = last_reproduction(results)
    if rep is None:
        return "<p class='small'>dilmbench reproduce: not run on this folder (no reproduce.json).</p>"
    c = rep.get("counts", {})
    line = (f"dilmbench reproduce ({_e(rep.get('created_at', '?'))}, commit {_e(str(rep.get('git_commit'))[:12])}): "
            f"{rep.get('reproduced', 0)} of {rep.get('with_result', 0)} declared runs re-run; {c.get('identical', 0)} "
            f"identical, {c.get('within tolerance', 0)} within {rep.get('tolerance_points')} points, "
            f"{c.get('different', 0)} different.")
    try:
        detail = render(rep)
    except (KeyError, TypeError, ValueError):  # a hand-edited file: the line above still says what it can
        detail = json.dumps(rep, indent=1)
    return (f"<p class='{'ok' if rep.get('ok') else 'bad'}'>{line}</p>"
            f"<details><summary>each re-run</summary><pre>{_e(detail)}</pre></details>")


def build_report(results: str | Path, site: str | Path, reference: str | None = None, split: str = "eval") -> Path:
    """Write ``site/index.html`` (and the figure beside it); return the page's path."""
    from .plots import plot
    from .tables import (build_cards_table, build_table, data_notes, load_cards, load_reference, load_results,
                         read_records)
    from .validate import render_report, validate

    results, site = Path(results), Path(site)
    read = read_records(results, split)  # once, for the table and for the provenance and set browser
    records = read[0]
    df = load_results(results, split, read)
    if site.resolve() == results.resolve():
        raise DilmbenchError("the site folder must not be the results folder itself")
    site.mkdir(parents=True, exist_ok=True)
    ref = load_reference(reference) if reference else None
    figures = plot(df, site, ref)
    table = build_table(df, ref)
    cards, missing_cards = load_cards(results, df)
    check = validate(results)
    browser, n_sets = _set_browser(results, records)
    status = ("<p class='ok'>dilmbench validate: every check passed.</p>" if check["ok"] else
              f"<p class='bad'>dilmbench validate: {len(check['problems'])} problem(s).</p>"
              f"<details><summary>what validate lists</summary><pre>{_e(render_report(check))}</pre></details>")
    status += _reproduction_html(results)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dilmbench results: {_e(results.name)}</title>
<style>{CSS}</style></head><body>
<h1>dilmbench results: {_e(results.name)}</h1>
<p class="small">Built {datetime.now(timezone.utc).isoformat(timespec='seconds')} from {len(df)} runs in
<code>{_e(results)}</code> ({_e(split)} split) by <code>dilmbench report</code>. Scores are percent, mean ± std (ddof 0)
over sets x inits.</p>
<h2 id="table">Table</h2>
{_table_html(table, "results-table")}
<ul class="small">{''.join(f'<li>{_e(n)}</li>' for n in data_notes(df))}</ul>
<h2 id="plot">Accuracy against DPC</h2>
<img class="figure" src="{_e(figures[0].name)}" alt="accuracy against DPC per method">
<p class="small"><a href="{_e(figures[1].name)}">PDF</a>. Error bars: std over sets x inits; the grey band is the
random baseline ± std{'; dashed: the reference' if ref is not None else ''}.</p>
<h2 id="validate">Checks</h2>
{status}
<h2 id="cards">Set cards</h2>
<p class="small">Label agreement with an independent judge (TF-IDF + logistic regression fitted on the pool), share of
texts found verbatim in train, mean words, distinct bigrams; mean ± std over a cell's sets.</p>
{_table_html(build_cards_table(cards), "cards-table") if not cards.empty else "<p>No set has a card.</p>"}
{f"<p class='small'>{len(missing_cards)} set(s) have no card.</p>" if missing_cards else ""}
<h2 id="provenance">Provenance and cost per cell</h2>
{_table_html(_cell_provenance(records), "provenance-table")}
<h2 id="sets">Set browser</h2>
<p class="small">{n_sets} text sets, grouped by task / method / DPC; open one to read its texts and labels.</p>
<div id="set-browser">
{browser}
</div>
</body></html>
"""
    index = site / "index.html"
    from .textset import atomic_write_text

    atomic_write_text(index, page)
    return index
