from pathlib import Path

import numpy as np
import pytest

from dilmbench.errors import DilmbenchError
from dilmbench.tasks import GLUE_REVISION, TASKS, carve_dev, get_task, load_split, load_task_data


def test_task_metadata_matches_the_hub_and_paper():
    sst2, qqp, mnli = TASKS["sst2"], TASKS["qqp"], TASKS["mnli"]
    assert {t.hub_id for t in (sst2, qqp, mnli)} == {"nyu-mll/glue"}
    assert {t.revision for t in (sst2, qqp, mnli)} == {GLUE_REVISION} and len(GLUE_REVISION) == 40
    assert sst2.text_fields == ("sentence",) and sst2.eval_split == "validation"
    assert qqp.text_fields == ("question1", "question2") and qqp.metric == "acc_f1_mean"
    assert mnli.text_fields == ("premise", "hypothesis") and mnli.eval_split == "validation_matched"
    assert mnli.label_names == ("entailment", "neutral", "contradiction")


def test_unknown_task_suggests():
    with pytest.raises(DilmbenchError, match="did you mean 'sst2'"):
        get_task("sst")


def test_embedded_sst2_is_complete():
    task = TASKS["sst2"]
    train = load_split(task, "train", "embedded")
    val = load_split(task, "validation", "embedded")
    assert len(train) == 67349 and len(val) == 872
    assert sum(train["label"]) == 37569 and sum(val["label"]) == 444


def test_embedded_has_no_qqp():
    with pytest.raises(DilmbenchError, match="no parquet files for qqp"):
        load_split(TASKS["qqp"], "train", "embedded")


def test_dev_split_is_stratified_disjoint_and_deterministic():
    labels = np.array([0] * 700 + [1] * 300)
    pool, dev = carve_dev(labels, 100, seed=0)
    assert len(set(pool) & set(dev)) == 0 and len(pool) + len(dev) == 1000
    assert (labels[dev] == 1).sum() == 30
    pool2, dev2 = carve_dev(labels, 100, seed=0)
    assert (dev == dev2).all()
    assert not (dev == carve_dev(labels, 100, seed=1)[1]).all()


def test_a_dev_split_made_once_is_read_back_as_scikit_learn_makes_it(monkeypatch):
    """The carved dev rows are kept in the cache (planning then imports no scikit-learn): read back, they are
    train_test_split's; other labels, size or seed make their own; a damaged cache file is made again."""
    import sklearn.model_selection as ms

    from dilmbench import tasks

    labels = np.random.default_rng(0).integers(0, 3, 900)
    pool, dev = carve_dev(labels, 90, seed=4)
    want_pool, want_dev = ms.train_test_split(np.arange(900), test_size=90, stratify=labels, random_state=4)
    assert (pool == np.sort(want_pool)).all() and (dev == np.sort(want_dev)).all()
    with monkeypatch.context() as m:
        m.setattr(ms, "train_test_split", lambda *a, **k: (_ for _ in ()).throw(AssertionError("split again")))
        again = carve_dev(labels, 90, seed=4)
        assert (again[0] == pool).all() and (again[1] == dev).all()
        with pytest.raises(AssertionError, match="split again"):  # another seed is another split
            carve_dev(labels, 90, seed=5)
    path = tasks._carved_path(labels, 90, 4)
    path.write_bytes(b"not an array")
    assert (carve_dev(labels, 90, seed=4)[1] == dev).all()


def _sst2_files(root: Path, n: int = 60):
    """SST-2 in the hub's parquet layout under ``root``, the same n rows as train and validation -> the rows."""
    import pandas as pd

    rows = pd.DataFrame({"sentence": [f"text {i}" for i in range(n)], "label": [i % 2 for i in range(n)],
                         "idx": range(n)})
    (root / "sst2").mkdir()
    for split in ("train", "validation"):
        rows.to_parquet(root / "sst2" / f"{split}-00000-of-00001.parquet")
    return rows


def test_a_cached_data_fingerprint_follows_the_files(tmp_path):
    """The data fingerprint kept in the cache is read back for the same files and made again when a file changes."""
    import os
    import time

    rows = _sst2_files(tmp_path)
    first = load_task_data(TASKS["sst2"], str(tmp_path), dev_size=6).fingerprint()
    assert load_task_data(TASKS["sst2"], str(tmp_path), dev_size=6).fingerprint() == first
    cached = list((Path(os.environ["DILMBENCH_CACHE"]) / "data-fingerprints").glob("sst2-*.json"))
    assert len(cached) == 1
    time.sleep(1.1)  # a new modification time
    rows.loc[5, "sentence"] = "another text"
    rows.to_parquet(tmp_path / "sst2" / "train-00000-of-00001.parquet")
    changed = load_task_data(TASKS["sst2"], str(tmp_path), dev_size=6).fingerprint()
    assert changed["id"] != first["id"]


def test_planning_reads_a_summary_of_the_same_files_and_loads_the_data_only_when_used(tmp_path, monkeypatch):
    """A second plan of the same files answers from the kept summary exactly as the data would, without reading
    them; texts load them then; a changed file is planned from the data again."""
    import time

    import pandas as pd

    import dilmbench.tasks as tasks
    from dilmbench.tasks import PlannedData, TaskData

    rows = pd.DataFrame({"premise": [f"premise number {i} " * (1 + i % 4) for i in range(90)],
                         "hypothesis": [f"h {i}" for i in range(90)], "label": [i % 3 for i in range(90)],
                         "idx": range(90)})
    (tmp_path / "mnli").mkdir()
    for split in ("train", "validation_matched"):
        rows.to_parquet(tmp_path / "mnli" / f"{split}-00000-of-00001.parquet")
    task = TASKS["mnli"]
    first = load_task_data(task, str(tmp_path), dev_size=9, planning=True)
    assert type(first) is TaskData  # nothing kept yet: the data itself
    loads = []
    real = tasks._load_task_data
    monkeypatch.setattr(tasks, "_load_task_data", lambda *a: loads.append(a) or real(*a))
    planned = load_task_data(task, str(tmp_path), dev_size=9, planning=True)
    assert type(planned) is PlannedData
    assert planned.fingerprint() == first.fingerprint() and planned.provenance() == first.provenance()
    assert [planned.rows(s) for s in ("pool", "dev", "eval")] == [81, 9, 90]
    assert planned.class_counts("pool") == first.class_counts("pool") == [27, 27, 27]
    for a, b in zip(planned.length_sample(), first.length_sample()):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert planned.dev_size == first.dev_size == 9 and planned.task is task and loads == []
    assert planned.texts("pool") == first.texts("pool") and len(loads) == 1  # loaded on first use, once
    assert np.array_equal(planned.labels("dev"), first.labels("dev")) and len(loads) == 1
    # another dev split is another summary
    assert type(load_task_data(task, str(tmp_path), dev_size=6, planning=True)) is TaskData
    time.sleep(1.1)  # a new modification time
    rows.loc[3, "premise"] = "another premise"
    rows.to_parquet(tmp_path / "mnli" / "train-00000-of-00001.parquet")
    again = load_task_data(task, str(tmp_path), dev_size=9, planning=True)
    assert type(again) is TaskData and again.fingerprint()["id"] != first.fingerprint()["id"]


def test_planned_data_that_no_longer_matches_its_files_stops_when_loaded(tmp_path):
    from dilmbench.tasks import PlannedData

    _sst2_files(tmp_path)
    summary = load_task_data(TASKS["sst2"], str(tmp_path), dev_size=6).summary()
    summary["fingerprint"] = {**summary["fingerprint"], "id": "0123456789ab"}  # planned on other data
    planned = PlannedData(TASKS["sst2"], str(tmp_path), 6, 0, summary)
    with pytest.raises(DilmbenchError, match="sst2's data changed after this grid was planned"):
        planned.texts("pool")


def test_a_second_dry_run_of_the_same_data_does_not_import_datasets(glue_dir, tmp_path):
    import os
    import subprocess
    import sys

    code = ("import sys\nfrom dilmbench.cli import main\n"
            "try:\n    main(['run', '--preset', 'quick', '--methods', 'random,herding', '--task', 'sst2,qqp', "
            "'--dry-run', '--out', sys.argv[1]], standalone_mode=False)\n"
            "finally:\n    print('datasets imported:', 'datasets' in sys.modules)\n")
    env = {**os.environ, "DILMBENCH_DATA_DIR": str(glue_dir)}
    said = [subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")], env=env, capture_output=True,
                           text=True, timeout=300) for _ in range(2)]
    for r in said:
        assert r.returncode == 0 and "total: " in r.stdout, r.stdout + r.stderr
    assert "datasets imported: True" in said[0].stdout  # the first plan reads the files
    assert "datasets imported: False" in said[1].stdout
    strip = lambda out: [l for l in out.splitlines() if not l.startswith(("planned in", "datasets imported"))]  # noqa: E731
    assert strip(said[0].stdout) == strip(said[1].stdout)


def test_local_dir_pairs_stay_pairs(glue_dir):
    data = load_task_data(TASKS["qqp"], str(glue_dir), dev_size=10)
    texts = data.texts("pool")
    assert all(len(t) == 2 for t in texts)
    assert len(data.pool) + len(data.dev) == 120 and len(data.eval) == 40
    data = load_task_data(TASKS["mnli"], str(glue_dir), dev_size=12)
    assert data.task.eval_split == "validation_matched" and len(data.eval) == 40


def test_env_var_names_the_data_dir(glue_dir, monkeypatch):
    monkeypatch.setenv("DILMBENCH_DATA_DIR", str(glue_dir))
    data = load_task_data(TASKS["mnli"], None, dev_size=12)
    assert data.source == str(glue_dir)


def test_qqp_score_is_mean_of_accuracy_and_f1():
    y = np.array([1, 1, 0, 0])
    p = np.array([1, 0, 0, 0])
    m = TASKS["qqp"].score(y, p)
    assert m["accuracy"] == 0.75 and abs(m["f1"] - 2 / 3) < 1e-9
    assert abs(m["score"] - (0.75 + 2 / 3) / 2) < 1e-9
    assert TASKS["sst2"].score(y, p)["score"] == 0.75


def test_a_score_records_how_often_each_class_was_answered():
    y = np.array([0, 1, 2, 0])
    assert TASKS["mnli"].score(y, np.array([0, 0, 0, 2]))["predicted_share"] == [0.75, 0.0, 0.25]
    always = TASKS["qqp"].score(np.array([1, 0, 0, 0]), np.zeros(4, dtype=int))
    assert always["predicted_share"] == [1.0, 0.0] and always["f1"] == 0.0


def test_a_new_task_in_one_plugin_file_runs_through_the_cli(tmp_path, tiny_bert):
    """An AG-News-like four-class task from a local parquet folder, with its own metric, added in one file."""
    import json
    import random as pyrandom

    import pandas as pd
    from click.testing import CliRunner

    from dilmbench.cli import main

    words = {0: "vote senate law minister", 1: "goal match team season", 2: "market shares profit bank",
             3: "chip software robot data"}
    rng = pyrandom.Random(0)
    root = tmp_path / "data" / "ag_tiny"
    root.mkdir(parents=True)
    for split, n in (("train", 80), ("test", 40)):
        rows = [{"text": " ".join(rng.choice(words[i % 4].split()) for _ in range(4)), "label": i % 4}
                for i in range(n)]
        pd.DataFrame(rows).to_parquet(root / f"{split}-00000-of-00001.parquet")
    plugin = tmp_path / "ag_task.py"
    plugin.write_text('''
from dilmbench.tasks import Task, register_task


def macro_f1(labels, preds):
    from sklearn.metrics import f1_score
    f1 = float(f1_score(labels, preds, average="macro"))
    return {"macro_f1": f1, "score": f1}


register_task(Task(name="ag_tiny", description="a tiny AG News-like topic task", hub_id="local/ag_tiny",
                   hub_config="ag_tiny", revision=None, text_fields=("text",),
                   label_names=("world", "sports", "business", "tech"), train_split="train", eval_split="test",
                   metric=macro_f1))
''')
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--plugin", str(plugin), "--task", "ag_tiny",
                                    "--methods", "random", "--learners", tiny_bert, "--steps", "2", "--data-dir",
                                    str(tmp_path / "data"), "--dev-size", "8", "--dpc", "2", "--out", str(out),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    rec = json.loads(next((out / "runs" / "ag_tiny").rglob("*.json")).read_text())
    assert rec["textset"]["class_counts"] == [2, 2, 2, 2] and "macro_f1" in rec["metrics"]
    assert rec["scored_on"]["name"] == "test" and rec["scored_on"]["size"] == 40
    res = CliRunner().invoke(main, ["ls", "tasks", "--plugin", str(plugin)])
    assert "ag_tiny" in res.output and "AG News-like" in res.output


def test_a_tables_notes_say_what_each_tasks_score_is():
    import pandas as pd

    from dilmbench.tables import data_notes
    from dilmbench.tasks import Task

    assert TASKS["qqp"].score_words.startswith("mean of accuracy and F1") and TASKS["mnli"].score_words == "accuracy"

    def my_metric(labels, preds):
        return {"score": 0.0}

    plugin = Task(name="x", description="", hub_id="", hub_config="", revision=None, text_fields=("t",),
                  label_names=("a", "b"), train_split="train", eval_split="validation", metric=my_metric)
    assert plugin.score_words == "the task's own metric (my_metric)"
    df = pd.DataFrame({"task": ["qqp", "sst2"], "data": ["aaa", "bbb"], "data_note": ["a subset", "complete"]})
    assert data_notes(df) == ["qqp data aaa: a subset; score: mean of accuracy and F1 (positive class: label 1)",
                              "sst2 data bbb: complete; score: accuracy"]
