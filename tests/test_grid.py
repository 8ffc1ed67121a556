"""A folder that declares its grid (grid.yaml): `run --config` makes it, `validate` checks against it, `reproduce`
re-runs it from nothing and compares."""
import json
import shutil

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from dilmbench.cli import main
from dilmbench.grid import declared_runs
from dilmbench.registry import METHODS, load_plugin, unload_plugin


def _entry(tiny_bert, **kw):
    e = {"preset": "quick", "tasks": ["sst2"], "methods": ["random", "herding"], "dpc": [2], "sets": 2,
         "encoder": tiny_bert, "dev_size": 10, "learners": [tiny_bert], "steps": 3}
    e.update(kw)
    return e


def _declare(folder, *entries):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "grid.yaml").write_text(yaml.safe_dump({"runs": list(entries)}))
    return folder / "grid.yaml"


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _runs(folder):
    return sorted(str(p.relative_to(folder)) for p in (folder / "runs").rglob("*.json"))


@pytest.fixture
def made(glue_dir, tiny_bert, tmp_path):
    """A folder declaring two entries (random + herding at DPC 2, 2 sets; random at DPC 3, 1 set), made by
    `run --config grid.yaml` into the grid's own folder."""
    folder = tmp_path / "made"
    grid = _declare(folder, _entry(tiny_bert), _entry(tiny_bert, methods=["random"], dpc=[3], sets=1,
                                                      note="one more DPC"))
    res = _cli("run", "--config", grid, "--data-dir", glue_dir, "--no-progress")
    assert res.exit_code == 0, res.output
    return folder


def test_run_config_makes_every_declared_run_into_the_grids_folder(made):
    want = sorted(d.relpath for d in declared_runs(made / "grid.yaml"))
    assert len(want) == 2 * 2 + 1
    assert _runs(made) == want
    res = _cli("validate", made)
    assert res.exit_code == 0 and "ok: 5 results, every check passed, the 5 runs grid.yaml declares" in res.output


def test_validate_names_declared_runs_missing_and_files_not_declared(made):
    runs = _runs(made)
    (made / runs[0]).unlink()
    stray = made / runs[1].replace("set01", "set07")
    shutil.copy(made / runs[1], stray)
    res = _cli("validate", made, "--json")
    assert res.exit_code == 1
    report = json.loads(res.output)
    details = {(p["path"], p["detail"]) for p in report["problems"] if p["check"] == "grid"}
    assert (runs[0], "declared in grid.yaml, missing") in details
    assert (str(stray.relative_to(made)), "not declared in grid.yaml") in details
    assert report["undeclared"] == [str(stray.relative_to(made))]


def test_without_a_declaration_validate_still_guesses_the_grid(made):
    (made / "grid.yaml").unlink()
    res = _cli("validate", made)
    assert res.exit_code == 1 and "grid: missing" in res.output  # herding has no DPC 3: the guess wants it


@pytest.mark.parametrize("entries, message", [
    ([{"preset": "quick", "out": "elsewhere"}], "entry 1 sets 'out'"),
    ([{"preset": "quick", "data_dir": "/data"}], "where the data lives differs between machines"),
    ([{"preset": "quick", "methods": ["random"]}, {"preset": "quick", "methods": ["random", "herding"]}],
     "entries 1 and 2 both declare"),
    ([{"preset": "quick", "methodz": ["random"]}], "entry 1: unknown config key 'methodz'"),
    ([{"preset": "quick", "methods": ["file:somewhere/"]}], "a declaration lists methods that make their sets"),
])
def test_a_bad_declaration_is_one_line(entries, message, tmp_path):
    grid = _declare(tmp_path / "f", *entries)
    res = _cli("run", "--config", grid, "--dry-run")
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_a_grid_file_is_not_reshaped_from_the_command_line(tiny_bert, tmp_path):
    grid = _declare(tmp_path / "f", _entry(tiny_bert))
    res = _cli("run", "--config", grid, "--sets", "5")
    assert res.exit_code == 2 and "--sets cannot change it" in res.output
    assert not (tmp_path / "f" / "runs").exists()


def test_a_bad_later_entry_stops_before_the_first_writes(glue_dir, tiny_bert, tmp_path):
    grid = _declare(tmp_path / "f", _entry(tiny_bert), _entry(tiny_bert, methods=["no_such_method"]))
    res = _cli("run", "--config", grid, "--data-dir", glue_dir, "--no-progress")
    assert res.exit_code == 2 and "no_such_method" in res.output
    assert not (tmp_path / "f" / "runs").exists()


def test_reproduce_all_runs_identical_and_the_page_shows_it(made, tmp_path):
    from dilmbench.reproduce import reproduce

    report = reproduce(made, data_source=str(_glue(made)), log=lambda m: None)
    assert report["reproduced"] == 5 and report["counts"]["identical"] == 5 and report["ok"]
    assert all(r["set"] == "made again" for r in report["runs"])  # random and herding write no texts
    saved = json.loads((made / "reproduce.json").read_text())
    assert saved["counts"] == report["counts"]
    res = _cli("report", made, "--out", tmp_path / "site")
    assert res.exit_code == 0, res.output
    page = (tmp_path / "site" / "index.html").read_text()
    assert "5 of 5 declared runs re-run; 5 identical" in page


def _glue(folder):
    rec = json.loads(next((folder / "runs").rglob("*.json")).read_text())
    return rec["data"]["source"]


def test_reproduce_a_sample_finds_a_changed_score_and_exits_1(made, tmp_path):
    victim = made / _runs(made)[2]
    rec = json.loads(victim.read_text())
    rec["score"] += 0.02  # two points: beyond the default 0.5
    victim.write_text(json.dumps(rec))
    res = _cli("reproduce", made, "--data-dir", _glue(made), "--no-progress")
    assert res.exit_code == 1, res.output
    assert "4 identical, 0 within tolerance, 1 different: NOT reproduced" in res.output
    res = _cli("reproduce", made, "--data-dir", _glue(made), "--no-progress", "--tolerance", "3")
    assert res.exit_code == 0 and "1 within tolerance" in res.output
    # a sample: the draw is the seed's, and only the drawn runs are made
    scratch = tmp_path / "scratch"
    res = _cli("reproduce", made, "--data-dir", _glue(made), "--no-progress", "--sample", "2", "--seed", "3",
               "--scratch", scratch)
    assert res.exit_code in (0, 1), res.output
    assert len(_runs(scratch)) == 2
    again = json.loads((made / "reproduce.json").read_text())
    assert again["reproduced"] == 2 and again["sample"] == 2
    res = _cli("reproduce", made, "--data-dir", _glue(made), "--scratch", scratch)
    assert res.exit_code == 2 and "is not empty" in res.output


def test_reproduce_needs_a_declaration(made):
    (made / "grid.yaml").unlink()
    res = _cli("reproduce", made)
    assert res.exit_code == 2 and "declares no grid" in res.output


WRITER = """
from dilmbench.api import Method
from dilmbench.registry import register_method
from dilmbench.textset import TextSet


@register_method("fake_writer")
class Writer(Method):
    \"\"\"A stand-in for a generator method: it 'writes' texts (copies the pool's) and counts its calls.\"\"\"

    writes_texts = True
    calls = 0

    def make_set(self, ctx, dpc, seed, set_index):
        type(self).calls += 1
        texts, labels = [], []
        pool_texts, pool_labels = ctx.data.texts("pool"), ctx.data.labels("pool")
        for c in range(ctx.task.num_labels):
            idx = [i for i, y in enumerate(pool_labels) if y == c][set_index:set_index + dpc]
            texts += [pool_texts[i] for i in idx]
            labels += [c] * len(idx)
        return TextSet(task=ctx.task.name, text_fields=ctx.task.text_fields, texts=texts, labels=labels)
"""


@pytest.fixture
def writer(tmp_path):
    path = tmp_path / "writer_plugin.py"
    path.write_text(WRITER)
    load_plugin(path)
    yield METHODS.get("fake_writer"), path
    unload_plugin(path)


def test_reproduce_reuses_only_generator_sets_and_says_so(writer, glue_dir, tiny_bert, tmp_path):
    writer, plugin = writer
    folder = tmp_path / "w"
    grid = _declare(folder, _entry(tiny_bert, methods=["fake_writer", "random"], sets=1))
    res = _cli("run", "--config", grid, "--data-dir", glue_dir, "--no-progress")
    assert res.exit_code == 0, res.output
    assert writer.calls == 1
    from dilmbench.reproduce import reproduce

    report = reproduce(folder, data_source=str(glue_dir), log=lambda m: None)
    assert writer.calls == 1  # its set was re-evaluated, not written again
    sets = {r["run"].split("/")[2]: r["set"] for r in report["runs"]}
    assert sets == {"fake_writer": "reused from the folder", "random": "made again"}
    assert report["counts"]["identical"] == 2
    # without the folder's set there is nothing to reuse: said in a line, nothing written again
    shutil.rmtree(folder / "sets" / "sst2" / "fake_writer")
    res = _cli("reproduce", folder, "--data-dir", glue_dir, "--no-progress", "--plugin", plugin)
    assert res.exit_code == 2 and "are not written again here" in res.output and writer.calls == 1


def test_validate_deep_names_results_made_otherwise_than_declared(made, glue_dir, tmp_path):
    res = _cli("validate", made, "--deep", "--data-dir", glue_dir)
    assert res.exit_code == 0 and "each planned as declared (--deep)" in res.output, res.output
    before = {p: p.read_bytes() for p in (made / "runs").rglob("*.json")}
    # the same data with one training text changed: the files and their configurations are as declared, so only
    # --deep, which loads the data, can tell
    other = tmp_path / "other-glue"
    shutil.copytree(glue_dir, other)
    train = next((other / "sst2").glob("train-*.parquet"))
    df = pd.read_parquet(train)
    df.loc[0, "sentence"] = df.loc[0, "sentence"] + " indeed"
    df.to_parquet(train)
    assert _cli("validate", made).exit_code == 0
    res = _cli("validate", made, "--deep", "--data-dir", other, "--json")
    assert res.exit_code == 1, res.output
    deep = [p for p in json.loads(res.stdout)["problems"] if p["check"] == "declared"]
    assert len(deep) == 5 and all("other data" in p["detail"] for p in deep), deep
    assert before == {p: p.read_bytes() for p in (made / "runs").rglob("*.json")}  # planning wrote nothing


def test_validate_names_results_whose_entry_now_states_another_configuration(made, tiny_bert, glue_dir):
    """Without loading any data: the declaration now says 4 steps for the second entry, whose one result was made
    with 3 (an option whose default changed after the results were made shows the same way, until it is pinned)."""
    _declare(made, _entry(tiny_bert), _entry(tiny_bert, methods=["random"], dpc=[3], sets=1, steps=4))
    res = _cli("validate", made, "--json")
    assert res.exit_code == 1
    named = [p for p in json.loads(res.output)["problems"] if p["check"] == "declared"]
    assert len(named) == 1 and "dpc3" in named[0]["path"], named
    assert named[0]["detail"] == ("not as entry 2 of grid.yaml states: evaluator_config.steps: the entry gives 4, "
                                  "the run recorded 3")
    # --deep names the run once, in those words
    res = _cli("validate", made, "--deep", "--data-dir", glue_dir, "--json")
    deep = [p for p in json.loads(res.stdout)["problems"] if p["check"] == "declared"]
    assert res.exit_code == 1 and deep == named
    # a method option the entry adds at its default value is the same configuration: nothing to name
    _declare(made, _entry(tiny_bert, method_options={"herding": {}}),
             _entry(tiny_bert, methods=["random"], dpc=[3], sets=1))
    assert _cli("validate", made).exit_code == 0


def test_validate_leaves_the_fast_path_version_to_deep_where_the_learners_config_is_not_here(made, tiny_bert,
                                                                                            monkeypatch):
    """A fast-path run's identity carries the fast path's version for its learner, read from the learner's config;
    validate reads no model, so where the config is not here (a CI machine without the model) that part is not
    compared, and where it is, a run made at another version is named."""
    import dilmbench.recipe as recipe

    assert _cli("validate", made).exit_code == 0
    monkeypatch.setitem(recipe._LEARNER_VERSION, tiny_bert, recipe.FAST_PATH_VERSION)  # as if the model were a decoder
    res = _cli("validate", made)
    assert res.exit_code == 1 and f"learner_identity: the entry gives {{'fast_path': {recipe.FAST_PATH_VERSION}}}, " \
                                  "the run recorded nothing" in res.output, res.output
    monkeypatch.setattr(recipe, "_UNREAD", {tiny_bert})  # its config could not be read here: version assumed
    assert _cli("validate", made).exit_code == 0
