import numpy as np
import pytest

from dilmbench.errors import DilmbenchError
from dilmbench.finetune import score
from dilmbench.tasks import GLUE_REVISION, TASKS, carve_dev, get_task, load_split, load_task_data


def test_task_metadata_matches_the_hub_and_paper():
    sst2, qqp, mnli = TASKS["sst2"], TASKS["qqp"], TASKS["mnli"]
    assert {t.hub_id for t in TASKS.values()} == {"nyu-mll/glue"}
    assert {t.revision for t in TASKS.values()} == {GLUE_REVISION} and len(GLUE_REVISION) == 40
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
    m = score("acc_f1_mean", y, p)
    assert m["accuracy"] == 0.75 and abs(m["f1"] - 2 / 3) < 1e-9
    assert abs(m["score"] - (0.75 + 2 / 3) / 2) < 1e-9
    assert score("accuracy", y, p)["score"] == 0.75
