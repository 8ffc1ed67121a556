"""validate, plot and report on a results folder made by the runner (tiny models, fixture data)."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dilmbench.cli import main
from dilmbench.config import build_config
from dilmbench.runner import Runner
from dilmbench.validate import validate


@pytest.fixture(scope="module")
def results(glue_dir, tiny_bert, tmp_path_factory):
    """random and herding at DPC 2 and 3, 2 sets x 2 inits, 2 fine-tuning steps."""
    out = tmp_path_factory.mktemp("results") / "out"
    cfg = build_config("quick", overrides={
        "tasks": ["sst2"], "methods": ["random", "herding"], "dpc": [2, 3], "sets": 2, "inits": 2,
        "encoder": tiny_bert, "pooling": "mean", "data_source": str(glue_dir), "dev_size": 10,
        "evaluator_options": {"finetune": {"learners": [tiny_bert], "steps": 2}}})
    Runner(cfg, out, progress=False, cache_dir=tmp_path_factory.mktemp("cache")).run()
    return out


def _copy(results, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(results, out)
    return out


def _runs(out):
    return sorted((out / "runs").rglob("*.json"))


def _expect(tiny_bert, glue_dir, sets):
    return (f"--preset quick --task sst2 --methods random,herding --dpc 2,3 --sets {sets} --inits 2 "
            f"--learners {tiny_bert} --encoder {tiny_bert} --data-dir {glue_dir}")


def test_validate_passes_a_complete_folder_and_lists_what_a_larger_grid_lacks(results, tiny_bert, glue_dir):
    report = validate(results)
    assert report["ok"] and report["results"] == 16 and not report["problems"], report["problems"][:3]
    res = CliRunner().invoke(main, ["validate", str(results), "--expect", _expect(tiny_bert, glue_dir, 2)])
    assert res.exit_code == 0 and res.output.startswith("ok: 16 results")
    res = CliRunner().invoke(main, ["validate", str(results), "--expect", _expect(tiny_bert, glue_dir, 3), "--json"])
    assert res.exit_code == 1
    missing = json.loads(res.output)["missing"]
    assert len(missing) == 2 * 2 * 2 and all("set02-init" in m for m in missing)  # 2 methods x 2 DPC x 2 inits
    res = CliRunner().invoke(main, ["validate", str(results), "--expect", "--dpc five"])
    assert res.exit_code != 0 and "--expect" in res.output and len(res.output.strip().splitlines()) == 1


def _break(out, how):
    runs = _runs(out)
    cell = [p for p in runs if "random" in p.parts and "dpc2" in p.parts]
    if how == "truncated":
        cell[0].write_text(cell[0].read_text()[:100])
        return cell[0], "parse", "not valid JSON"
    if how == "foreign":
        (cell[0].parent / "notes.txt").write_text("mine\n")
        return cell[0].parent / "notes.txt", "parse", "foreign file"
    if how == "two configurations":
        rec = json.loads(cell[1].read_text())
        rec["config"]["evaluator_config"]["steps"] = 99
        cell[1].write_text(json.dumps(rec))
        return "random/2", "cell", "2 configurations in one cell"
    if how == "duplicated seed":
        a, b = (json.loads(p.read_text()) for p in cell[:2])
        b["seeds"]["init"] = a["seeds"]["init"]
        cell[1].write_text(json.dumps(b))
        return cell[1], "cell", f"seed {a['seeds']['init']} is also the seed of"
    if how == "missing set":
        set_file = out / json.loads(cell[0].read_text())["textset"]["path"]
        set_file.unlink()
        return cell[0], "set", "is missing or unreadable"
    if how == "edited set":
        set_file = out / json.loads(cell[0].read_text())["textset"]["path"]
        set_file.write_text(set_file.read_text().replace('"label": 0', '"label": 1', 1))
        return cell[0], "set", "was changed after the run"
    if how == "dev score among eval scores":
        rec = json.loads(cell[0].read_text())
        rec["scored_on"]["split"] = "dev"
        cell[0].write_text(json.dumps(rec))
        return cell[0], "split", "scored on the dev split but stored under runs/"
    if how == "no data fingerprint":
        rec = json.loads(cell[0].read_text())
        rec["data"].pop("fingerprint")
        cell[0].write_text(json.dumps(rec))
        return cell[0], "provenance", "no data fingerprint recorded"
    if how == "a hole in the grid":
        cell[0].unlink()
        return cell[0], "grid", "missing"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated", "foreign", "two configurations", "duplicated seed", "missing set",
                                 "edited set", "dev score among eval scores", "no data fingerprint",
                                 "a hole in the grid"])
def test_validate_finds_and_names_each_fault(results, tmp_path, how):
    out = _copy(results, tmp_path)
    where, check, detail = _break(out, how)
    report = validate(out)
    assert not report["ok"]
    hits = [p for p in report["problems"] if p["check"] == check and detail in p["detail"]]
    assert hits, report["problems"]
    name = str(where.relative_to(out)) if isinstance(where, Path) else where
    assert any(name in p["path"] or name in p["detail"] for p in hits), (name, hits)
    res = CliRunner().invoke(main, ["validate", str(out)])
    assert res.exit_code == 1 and detail in res.output


def test_plot_draws_each_method_with_std_bars_the_baseline_band_and_the_papers_curve(results, tiny_bert, tmp_path):
    from dilmbench.plots import figure
    from dilmbench.tables import load_results

    ref = tmp_path / "ref.csv"
    ref.write_text("task,learner,method,dpc,mean,std\n"
                   f"sst2,{Path(tiny_bert).name},herding,2,70.0,1.0\nsst2,{Path(tiny_bert).name},herding,3,75.0,1.0\n")
    res = CliRunner().invoke(main, ["plot", "--out", str(results), "--to", str(tmp_path / "p"), "--reference", str(ref)])
    assert res.exit_code == 0, res.output
    png, pdf = tmp_path / "p" / "accuracy_vs_dpc.png", tmp_path / "p" / "accuracy_vs_dpc.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and pdf.read_bytes()[:5] == b"%PDF-"
    from dilmbench.tables import load_reference

    fig = figure(load_results(results), load_reference(str(ref)))
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert sorted(labels) == sorted(["random ± std", "random", "herding", "paper: herding"])
    dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_ydata()) == [70.0, 75.0]
    assert len(ax.collections) >= 2  # the baseline's band and herding's error bars
    # a method without a middle DPC: its line breaks there (NaN) instead of joining its neighbours through it
    df = load_results(results)
    df.loc[(df["method"] == "herding") & (df["dpc"] == 3), "dpc"] = 4
    ax = figure(df).axes[0]
    herding = [ln for ln in ax.get_lines() if len(ln.get_ydata()) == 3 and ln.get_linestyle() == "-"]
    assert len(herding) == 1
    y = list(herding[0].get_ydata())
    assert y[0] == y[0] and y[1] != y[1] and y[2] == y[2], y  # measured, NaN, measured

    # results made on a subset pool, or scored on part of the split, say so in the panel's title, as the table does
    from dilmbench.plots import panels

    df = load_results(results)
    df["data_note"] = "complete train and evaluation splits (pool 10, dev 2, validation 9; source x)"
    (title, _), = panels(df)
    assert "\n" not in title
    df["data_note"] = "SUBSET, not the paper's setting: train 10 of 20 rows; SCORED ON THE FIRST 5 OF 9 validation rows only"
    (title, _), = panels(df)
    assert title.endswith("\nSUBSET data, not the paper's setting; part of the evaluation split scored")


def _browser():
    selenium = pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("no Chromium / chromedriver on this machine (Debian: apt-get install chromium chromium-driver)")
    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1300,1800"):
        opts.add_argument(arg)
    del selenium
    return webdriver.Chrome(service=Service(driver), options=opts)


def test_report_page_renders_in_a_real_browser(results, tmp_path):
    from selenium.webdriver.common.by import By  # noqa: F401  (skips with the browser when selenium is absent)

    site = tmp_path / "site"
    res = CliRunner().invoke(main, ["report", str(results), "--out", str(site)])
    assert res.exit_code == 0, res.output
    page = (site / "index.html").read_text()
    assert "<script" not in page  # a static page: nothing to run
    browser = _browser()
    try:
        browser.get((site / "index.html").as_uri())
        # the table: one row per method, then one gain row per method against random
        rows = browser.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")
        assert [r.find_element(By.TAG_NAME, "th").text for r in rows] == ["random", "herding", "herding − random"]
        assert "±" in rows[0].text
        images = browser.find_elements(By.CSS_SELECTOR, "img.figure")
        assert len(images) == 1 and browser.execute_script("return arguments[0].naturalWidth", images[0]) > 300
        assert "every check passed" in browser.find_element(By.ID, "validate").find_element(By.XPATH, "following-sibling::p").text
        # the set browser: every set, closed; opened, its texts and labels are there to read
        sets = browser.find_elements(By.CSS_SELECTOR, "details.set")
        assert len(sets) == 2 * 2 * 2  # 2 methods x 2 DPC x 2 sets
        first = sets[0]
        cell = first.find_element(By.XPATH, "ancestor::details[1]")
        cell.find_element(By.TAG_NAME, "summary").click()
        first.find_element(By.TAG_NAME, "summary").click()
        texts = first.find_elements(By.CSS_SELECTOR, "table.set-texts tr td:nth-child(2)")
        labels = {td.text for td in first.find_elements(By.CSS_SELECTOR, "td.label")}
        set_file = results / first.get_attribute("data-set")
        want = [json.loads(line)["sentence"] for line in set_file.read_text().splitlines()]
        assert texts and all(t.is_displayed() for t in texts) and sorted(t.text for t in texts) == sorted(want)
        assert labels == {"negative", "positive"}
        shot = tmp_path / "report.png"
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        browser.quit()


def test_table_cost_says_what_each_cell_took(results):
    res = CliRunner().invoke(main, ["table", "--out", str(results), "--cost"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("| sst2")]
    cost = [ln for ln in lines if ln.count("|") > 9]  # the cost table's rows
    assert len(cost) == 4 and all("–" not in ln.split("|")[5] for ln in cost)  # set-making seconds for every cell
    runs = {ln.split("|")[2].strip(): int(ln.split("|")[4]) for ln in cost}
    assert runs == {"herding": 4, "random": 4}


def test_table_metric_tabulates_a_recorded_metric_and_names_the_known_ones(results):
    res = CliRunner().invoke(main, ["table", "--out", str(results), "--metric", "accuracy"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(p.read_text()) for p in _runs(results)]
    want = [r["metrics"]["accuracy"] for r in recs if r["method"] == "herding" and r["dpc"] == 2]
    row = next(ln for ln in res.output.splitlines() if ln.startswith("| herding "))
    assert row.split("|")[2].strip() == f"{sum(want) / len(want):.2f} ± {float(np.std(want)):.2f} (n=4)"
    assert "− random" not in res.output  # a metric gets no gain rows
    res = CliRunner().invoke(main, ["table", "--out", str(results), "--metric", "no_such_metric"])
    assert res.exit_code != 0 and "no result records a numeric metric 'no_such_metric'" in res.output
    assert "accuracy" in res.output.splitlines()[-1]


def test_runs_scored_on_part_of_the_split_are_never_averaged_with_whole_split_runs(results, tmp_path):
    out = _copy(results, tmp_path)
    path = next(p for p in _runs(out) if "herding" in str(p) and "dpc2" in str(p))
    rec = json.loads(path.read_text())
    size = rec["scored_on"]["size"]
    rec["metrics"]["eval_examples"] = size - 3  # as an evaluator's max_eval records it
    path.write_text(json.dumps(rec))
    res = CliRunner().invoke(main, ["table", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"SCORED ON THE FIRST {size - 3:,} OF {size:,}" in res.output
    header = res.output.splitlines()[0]
    assert header.count("DPC 2") == 2 and ", first " in header  # its own column, not one cell with the others
    cells = [ln for ln in res.output.splitlines() if ln.startswith("| herding ")][0]
    assert "(n=1)" in cells and "(n=3)" in cells


def test_report_over_a_folder_of_results_folders_builds_one_site(results, glue_dir, tiny_bert, tmp_path):
    root = tmp_path / "results"
    shutil.copytree(results, root / "a")
    # a second folder: random again (the same cell as a's, under another configuration) and kcenters, 3 steps
    cfg = build_config("quick", overrides={
        "tasks": ["sst2"], "methods": ["random", "kcenters"], "dpc": [2], "sets": 2, "inits": 1,
        "encoder": tiny_bert, "pooling": "mean", "data_source": str(glue_dir), "dev_size": 10,
        "evaluator_options": {"finetune": {"learners": [tiny_bert], "steps": 3}}})
    Runner(cfg, root / "b", progress=False, cache_dir=tmp_path / "cache").run()
    (root / "notes").mkdir()  # not a results folder: left out
    site = tmp_path / "site"
    res = CliRunner().invoke(main, ["report", str(root), "--out", str(site)])
    assert res.exit_code == 0, res.output
    page = (site / "index.html").read_text()
    assert (site / "a" / "index.html").is_file() and (site / "b" / "index.html").is_file()
    assert "href='a/index.html'" in page and "href='b/index.html'" in page and "notes" not in page
    # random at DPC 2 is in both folders: two rows, never one pooled cell; herding and kcenters once each
    assert "random [a]" in page and "random [b]" in page and "MIXED" not in page
    assert ">herding<" in page and ">kcenters<" in page
    assert "id=\"robustness-table\"" in page and (site / "accuracy_vs_cost.png").stat().st_size > 10_000
    browser = _browser()
    try:
        from selenium.webdriver.common.by import By

        browser.get((site / "index.html").as_uri())
        board = browser.find_elements(By.CSS_SELECTOR, "#board-sst2 tbody tr")
        names = [r.find_element(By.TAG_NAME, "th").text for r in board]
        assert {"random [a]", "random [b]", "herding", "kcenters"} <= set(names)
        img = browser.find_element(By.CSS_SELECTOR, "#cost ~ img.figure")
        assert browser.execute_script("return arguments[0].naturalWidth", img) > 300
        browser.find_element(By.LINK_TEXT, "b").click()
        assert browser.find_elements(By.CSS_SELECTOR, "#results-table tbody tr")  # the folder's own page opens
    finally:
        browser.quit()


def test_a_sets_cost_is_the_run_that_made_it_not_a_later_run_that_reused_it():
    from dilmbench.record import timing_rollup

    # set a made in 30 s by one learner's run, then read again (0.01 s) by another learner's; set b made in 10 s
    runs = [("a", {"make_set": 0.01, "evaluate_total": 5.0}), ("a", {"make_set": 30.0, "evaluate_total": 3.0}),
            ("b", {"make_set": 10.0, "evaluate_total": 4.0})]
    cost = timing_rollup(runs)
    assert cost["make_set_s"] == pytest.approx(20.0) and cost["evaluate_s"] == pytest.approx(4.0)
