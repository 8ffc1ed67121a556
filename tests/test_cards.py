import json

import pytest
from click.testing import CliRunner

from dilmbench.cards import distinct_n, set_card
from dilmbench.cli import main
from dilmbench.tasks import TASKS, load_task_data
from dilmbench.textset import TextSet


@pytest.fixture
def sst2(glue_dir):
    return load_task_data(TASKS["sst2"], str(glue_dir), dev_size=20)


def test_distinct_2_by_hand():
    # bigrams: (a b) (b a) (a b) | (a b) -> 2 distinct of 4
    assert distinct_n(["a b a b", "A B"], 2) == pytest.approx(2 / 4)
    assert distinct_n(["one"], 2) == 0.0


def test_card_of_real_flipped_and_new_texts(sst2, tmp_path):
    texts, labels = sst2.texts("pool")[:20], sst2.labels("pool")[:20]
    real = TextSet("sst2", ("sentence",), texts, labels)
    card = set_card(real, sst2, tmp_path)
    assert card["memorised"] == 1.0 and card["label_agreement"] >= 0.9  # the fixture's classes use different words
    assert card["judge_dev_accuracy"] >= 0.9
    flipped = set_card(TextSet("sst2", ("sentence",), texts, [1 - y for y in labels]), sst2, tmp_path)
    assert flipped["label_agreement"] <= 0.1
    # bigrams (good fun) (fun good) (good fun) | (dull bad) (bad awful): 4 distinct of 5
    new = TextSet("sst2", ("sentence",), [("good fun good fun",), ("dull bad awful",)], [1, 0])
    card = set_card(new, sst2, tmp_path)
    assert card["memorised"] == 0.0 and card["label_agreement"] == 1.0
    assert card["mean_words"] == 3.5 and card["distinct_2"] == pytest.approx(4 / 5)
    assert list((tmp_path / "judges").glob("sst2-*.joblib"))  # fitted once, kept for the next process


def test_runner_writes_cards_and_table_shows_them(glue_dir, tiny_bert, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--task", "sst2", "--methods", "random,herding",
                                    "--dpc", "2", "--sets", "2", "--learners", tiny_bert, "--encoder", tiny_bert,
                                    "--steps", "2", "--data-dir", str(glue_dir), "--dev-size", "10", "--out", str(out),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "time by phase:" in res.output and "evaluate: train" in res.output and "make set" in res.output
    metas = sorted((out / "sets").rglob("*.meta.json"))
    assert len(metas) == 4
    for m in metas:
        card = json.loads(m.read_text())["card"]
        assert card["memorised"] == 1.0 and 0 <= card["label_agreement"] <= 1
    # a set made before cards existed gets its card when the same command runs again
    meta = json.loads(metas[0].read_text())
    del meta["card"]
    metas[0].write_text(json.dumps(meta))
    res = CliRunner().invoke(main, ["table", "--out", str(out), "--cards"])
    assert res.exit_code == 0 and "1 set(s) have no card" in res.output
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--task", "sst2", "--methods", "random,herding",
                                    "--dpc", "2", "--sets", "2", "--learners", tiny_bert, "--encoder", tiny_bert,
                                    "--steps", "2", "--data-dir", str(glue_dir), "--dev-size", "10", "--out", str(out),
                                    "--no-progress"])
    assert res.exit_code == 0 and "0 runs, 4 skipped" in res.output
    assert "card" in json.loads(metas[0].read_text())
    res = CliRunner().invoke(main, ["table", "--out", str(out), "--cards"])
    assert res.exit_code == 0, res.output
    assert "judge agrees %" in res.output and "100.0 ± 0.0" in res.output and "no card" not in res.output


def test_contamination_finds_a_planted_near_copy_of_the_evaluation_split(sst2, tmp_path):
    from dilmbench.cards import content_words, max_overlap

    # by hand: stop words and punctuation go; 2 of the 3 content words of "great cast, dull plot!" are in "dull plot"
    assert content_words("The great cast, a DULL plot!") == {"great", "cast", "dull", "plot"}
    assert max_overlap({"great", "cast", "dull"}, {"dull": [0], "cast": [0, 1]}, 2) == pytest.approx(2 / 3)
    ev = sst2.texts("eval")[3][0]
    planted = TextSet("sst2", ("sentence",), [(ev.upper() + " !",), ("zebra quantum saxophone",)], [0, 1])
    card = set_card(planted, sst2, tmp_path)
    assert card["near_copies_of_eval"] == 0.5  # the copy (case and punctuation changed), not the unrelated text
    assert card["eval_overlap"] == pytest.approx(0.5)  # 1.0 for the copy, 0 for words no evaluation text holds
    assert card["card_version"] == 2
    real = set_card(TextSet("sst2", ("sentence",), sst2.texts("pool")[:10], sst2.labels("pool")[:10]), sst2, tmp_path)
    assert 0 <= real["eval_overlap"] <= 1


def test_an_older_card_gains_the_contamination_fields_on_the_next_run(glue_dir, tiny_bert, tmp_path):
    out = tmp_path / "out"
    args = ["run", "--preset", "quick", "--methods", "random", "--dpc", "2", "--sets", "1", "--steps", "2",
            "--encoder", tiny_bert, "--learners", tiny_bert, "--data-dir", str(glue_dir), "--dev-size", "10",
            "--out", str(out), "--no-progress"]
    assert CliRunner().invoke(main, args).exit_code == 0
    meta = next((out / "sets").rglob("*.meta.json"))
    m = json.loads(meta.read_text())
    for k in ("eval_overlap", "near_copies_of_eval"):
        m["card"].pop(k)
    m["card"]["card_version"] = 1
    meta.write_text(json.dumps(m))
    res = CliRunner().invoke(main, ["table", "--out", str(out), "--cards"])
    assert res.exit_code == 0 and "–" in res.output  # an old card: shown as not measured, not as zero
    assert CliRunner().invoke(main, args).exit_code == 0  # every run done: only the card is brought up to date
    card = json.loads(meta.read_text())["card"]
    assert card["card_version"] == 2 and "eval_overlap" in card
