import json
import re

import pytest
from click.testing import CliRunner

from dilmbench.cli import main
from dilmbench.config import build_config
from dilmbench.errors import DilmbenchError
from dilmbench.registry import EVALUATORS
from dilmbench.runner import Runner, derive_seed, read_result
from dilmbench.textset import meta_path


def _cfg(glue_dir, tiny_bert, **kw):
    base = {"tasks": ["sst2"], "methods": ["random", "herding"], "dpc": [2, 3], "sets": 2, "inits": 2,
            "encoder": tiny_bert, "pooling": "mean", "data_source": str(glue_dir), "dev_size": 10,
            "evaluator_options": {"finetune": {"learners": [tiny_bert], "steps": 3}}}
    base.update(kw)
    return build_config("quick", overrides=base)


def _runs(out):
    return sorted((out / "runs").rglob("*.json"))


def test_grid_writes_one_complete_result_per_run(glue_dir, tiny_bert, tmp_path):
    out = tmp_path / "out"
    counts = Runner(_cfg(glue_dir, tiny_bert), out, progress=False).run()
    assert counts["done"] == 2 * 2 * 2 * 2 and counts["sets_made"] == 2 * 2 * 2
    files = _runs(out)
    assert len(files) == 16
    rec = json.loads(files[0].read_text())
    for key in ("schema_version", "config_hash", "seeds", "models", "environment", "device", "timing_s", "textset", "data"):
        assert key in rec
    assert rec["environment"]["versions"]["torch"] and rec["device"]["device"] == "cpu"
    assert rec["seeds"]["init"] == derive_seed(0, rec["task"], rec["method"], rec["dpc"], rec["set_index"], rec["init_index"])
    assert rec["config"]["evaluator_config"]["steps"] == 3 and rec["config"]["evaluator_config"]["lr"] == 1e-4
    assert (out / rec["textset"]["path"]).is_file()
    # set seeds differ across sets; the herding set is the same for every set index (deterministic method)
    sets = sorted((out / "sets" / "sst2" / "random" / "dpc2").glob("*.jsonl"))
    assert len(sets) == 2 and sets[0].read_text() != sets[1].read_text()


def test_rerun_skips_and_interrupted_run_resumes(glue_dir, tiny_bert, tmp_path, monkeypatch):
    out = tmp_path / "out"
    cfg = _cfg(glue_dir, tiny_bert, methods=["random"], dpc=[2], sets=2, inits=2)
    finetune = EVALUATORS.get("finetune")
    real = finetune.evaluate
    calls = {"n": 0}

    def dies_after_three(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt  # the user pressed ^C / the job was killed
        return real(self, *a, **k)

    monkeypatch.setattr(finetune, "evaluate", dies_after_three)
    with pytest.raises(KeyboardInterrupt):
        Runner(cfg, out, progress=False).run()
    assert len(_runs(out)) == 3
    assert not list(out.rglob("*.tmp"))  # nothing half-written
    monkeypatch.setattr(finetune, "evaluate", real)
    first = {p: p.read_text() for p in _runs(out)}
    counts = Runner(cfg, out, progress=False).run()
    assert counts == {"done": 1, "skipped": 3, "sets_made": 0, "sets_reused": 1}
    assert all(p.read_text() == t for p, t in first.items())
    # a truncated result is detected and redone; 'never' leaves it, 'always' redoes all
    victim = _runs(out)[0]
    victim.write_text(victim.read_text()[:40])
    import dilmbench.runner as runner_module

    reads = []
    monkeypatch.setattr(runner_module, "read_result", lambda p: reads.append(p) or read_result(p))
    assert Runner(cfg, out, overwrite="never", progress=False).run()["done"] == 0
    assert sorted(reads) == _runs(out)  # planning reads each result once, the truncated one included
    monkeypatch.setattr(runner_module, "read_result", read_result)
    assert read_result(victim) is None
    said = []
    assert Runner(cfg, out, progress=False, log=said.append).run()["done"] == 1
    assert f"replacing {victim}: it is not a complete result" in said
    assert read_result(victim) is not None
    assert Runner(cfg, out, overwrite="always", progress=False).run()["done"] == 4


def test_changed_protocol_stops_unless_told_to_replace(glue_dir, tiny_bert, tmp_path):
    out = tmp_path / "out"
    cfg = _cfg(glue_dir, tiny_bert, methods=["random"], dpc=[2], sets=2, inits=1)
    Runner(cfg, out, progress=False).run()
    before = {p: p.read_text() for p in out.rglob("*") if p.is_file()}
    (_runs(out)[1]).unlink()  # one run missing: even it is not run, the whole grid is checked first
    cfg["evaluator_options"]["finetune"]["steps"] = 4
    # a finished result made under another configuration would be destroyed: stop before anything runs
    with pytest.raises(DilmbenchError, match=r"1 finished result\(s\) in .* another configuration: evaluator_config"
                                             r"\.steps: this run gives 4, the result recorded 3\).*--overwrite changed"):
        Runner(cfg, out, progress=False).run()
    assert len(_runs(out)) == 1 and all(p.read_text() == before[p] for p in out.rglob("*") if p.is_file())
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--task", "sst2", "--methods", "random", "--dpc", "2",
                                    "--sets", "2", "--steps", "4", "--learners", tiny_bert, "--encoder", tiny_bert,
                                    "--data-dir", str(glue_dir), "--dev-size", "10", "--out", str(out), "--no-progress"])
    assert res.exit_code != 0 and "another configuration" in res.output and len(res.output.strip().splitlines()) == 1
    assert len(_runs(out)) == 1
    # --overwrite changed replaces it, and says so
    said = []
    assert Runner(cfg, out, overwrite="changed", progress=False, log=said.append).run()["done"] == 2
    assert [m for m in said if m.startswith("replacing ") and "another configuration" in m]
    assert all(read_result(p)["config"]["evaluator_config"]["steps"] == 4 for p in _runs(out))
    # the CLI offers exactly the runner's modes (it keeps its own list to keep its imports light)
    from dilmbench.runner import OVERWRITE_MODES

    option = next(o for o in main.commands["run"].params if o.name == "overwrite")
    assert set(option.type.choices) == set(OVERWRITE_MODES)


def test_sets_only_makes_the_sets_and_a_later_run_evaluates_them(glue_dir, tiny_bert, tmp_path, monkeypatch):
    out = tmp_path / "out"
    cfg = _cfg(glue_dir, tiny_bert, methods=["random"], dpc=[2], sets=2, inits=2)
    finetune = EVALUATORS.get("finetune")

    def never(self, *a, **k):
        raise AssertionError("--sets-only evaluated a run")

    monkeypatch.setattr(finetune, "evaluate", never)
    counts = Runner(cfg, out, progress=False, sets_only=True).run()
    assert counts["sets_made"] == 2 and counts["done"] == 0 and counts["not_evaluated"] == 4
    assert not _runs(out)
    sets = sorted((out / "sets").rglob("*.jsonl"))
    assert len(sets) == 2 and all(json.loads(meta_path(p).read_text()).get("card") for p in sets)
    made = {p: p.read_text() for p in sets}
    monkeypatch.undo()
    counts = Runner(cfg, out, progress=False).run()
    assert counts["sets_reused"] == 2 and counts["sets_made"] == 0 and counts["done"] == 4
    assert all(p.read_text() == t for p, t in made.items())


def test_shards_cover_the_grid_once_with_the_same_sets(glue_dir, tiny_bert, tmp_path):
    cfg = _cfg(glue_dir, tiny_bert, methods=["random"], dpc=[2, 3], sets=2, inits=1)
    Runner(cfg, tmp_path / "whole", progress=False, sets_only=True).run()
    made = []
    for k in (0, 1):
        counts = Runner(cfg, tmp_path / "sharded", progress=False, sets_only=True, shard=f"{k}/2").run()
        made.append(counts["sets_made"])
    assert made == [2, 2]  # every other set of the 4, none twice
    whole = {p.relative_to(tmp_path / "whole"): p.read_text() for p in (tmp_path / "whole").rglob("*.jsonl")}
    sharded = {p.relative_to(tmp_path / "sharded"): p.read_text() for p in (tmp_path / "sharded").rglob("*.jsonl")}
    assert len(whole) == 4 and sharded == whole
    for bad in ("2/2", "1", "a/b", "-1/2"):
        res = CliRunner().invoke(main, ["run", "--shard", bad, "--out", str(tmp_path / "x")])
        assert res.exit_code == 2 and "--shard" in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "x").exists()


def test_scores_on_the_dev_split_are_kept_apart(glue_dir, tiny_bert, tmp_path):
    out = tmp_path / "out"
    cfg = _cfg(glue_dir, tiny_bert, methods=["random"], dpc=[2], sets=1, inits=1, score_split="dev")
    Runner(cfg, out, progress=False).run()
    assert not _runs(out)  # nothing in runs/, which the paper tables read
    files = sorted((out / "runs-dev").rglob("*.json"))
    rec = json.loads(files[0].read_text())
    assert len(files) == 1 and rec["scored_on"]["split"] == "dev" and rec["scored_on"]["size"] == 10
    assert rec["metrics"]["eval_examples"] == 10 and rec["config"]["score_split"] == "dev"
    res = CliRunner().invoke(main, ["table", "--out", str(out), "--split", "dev"])
    assert res.exit_code == 0 and "random" in res.output, res.output
    assert CliRunner().invoke(main, ["table", "--out", str(out)]).exit_code != 0  # no evaluation-split results
    # the same set scored on the evaluation split: a separate run (other identity), the set reused
    counts = Runner(_cfg(glue_dir, tiny_bert, methods=["random"], dpc=[2], sets=1, inits=1), out, progress=False).run()
    assert counts["done"] == 1 and counts["sets_reused"] == 1
    ev = json.loads(_runs(out)[0].read_text())
    assert ev["scored_on"]["split"] == "eval" and ev["config_hash"] != rec["config_hash"] and "score_split" not in ev["config"]


def test_pair_task_end_to_end_and_table(glue_dir, tiny_bert, tmp_path):
    out = tmp_path / "out"
    cfg = _cfg(glue_dir, tiny_bert, tasks=["qqp"], methods=["random", "kcenters"], dpc=[2], sets=2, inits=1)
    Runner(cfg, out, progress=False).run()
    rec = json.loads(_runs(out)[0].read_text())
    assert set(rec["metrics"]) >= {"accuracy", "f1"} and rec["score"] == pytest.approx((rec["metrics"]["accuracy"] + rec["metrics"]["f1"]) / 2)
    res = CliRunner().invoke(main, ["table", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "qqp / tiny-bert0 / DPC 2" in res.output and "kcenters − random" in res.output and "(n=2)" in res.output
    for fmt, marker in (("latex", "\\toprule"), ("csv", "method,")):
        res = CliRunner().invoke(main, ["table", "--out", str(out), "--format", fmt])
        assert res.exit_code == 0 and marker in res.output


def test_table_mean_and_std_use_ddof0(tmp_path):
    import pandas as pd

    from dilmbench.tables import build_table

    df = pd.DataFrame({"task": "sst2", "evaluator": "finetune", "learner": "m", "method": ["random"] * 2 + ["herding"] * 2,
                       "dpc": 5, "set": [0, 1, 0, 1], "init": 0, "score": [0.5, 0.7, 0.8, 0.8]})
    t = build_table(df)
    assert t.loc["random"].iloc[0] == "60.0 ± 10.0 (n=2)"
    assert t.loc["herding − random"].iloc[0] == "+20.0"


def test_full_data_ceiling_fills_its_learners_columns_with_dd_rankings_scores_by_hand():
    import pandas as pd

    from dilmbench.tables import build_robustness, build_table

    rows = [("random", 5, [0.50, 0.60]), ("herding", 5, [0.70, 0.70]), ("random", 10, [0.60, 0.60]),
            ("herding", 10, [0.65, 0.75]), ("full", 36000, [0.90, 0.86])]
    df = pd.DataFrame([{"task": "sst2", "evaluator": "finetune", "learner": "org/m", "method": m, "dpc": d, "set": i,
                        "init": 0, "score": sc, "ceiling": m == "full", "chosen_with": ""}
                       for m, d, scores in rows for i, sc in enumerate(scores)])
    t = build_table(df, dd_ranking=True)
    assert list(t.columns) == ["sst2 / m / DPC 5", "sst2 / m / DPC 10"]  # no column of the ceiling's own
    assert t.index[0] == "full (ceiling)" and t.loc["full (ceiling)"].tolist() == ["88.0 ± 2.0 (n=2)"] * 2
    # HLR = ceiling mean - method mean; IOR = method mean - random mean
    assert t.loc["herding: HLR (ceiling − it)"].tolist() == ["18.0", "18.0"]
    assert t.loc["random: HLR (ceiling − it)"].tolist() == ["33.0", "28.0"]
    assert t.loc["herding: IOR (it − random)"].tolist() == ["+15.0", "+10.0"]
    assert "herding − random" in build_table(df).index  # without --dd-ranking the gain row keeps its name
    per, _, _ = build_robustness(df)
    assert "full" not in per.index  # the ceiling is not a contender
    with pytest.raises(DilmbenchError, match="full-data results"):
        build_table(df[~df["ceiling"]], dd_ranking=True)


def test_full_method_trains_on_the_whole_pool_under_the_recipe(glue_dir, tiny_bert, tmp_path):
    from click.testing import CliRunner

    from dilmbench.tasks import TASKS, load_task_data

    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--task", "sst2", "--methods", "random,full", "--dpc",
                                    "2", "--sets", "1", "--learners", tiny_bert, "--encoder", tiny_bert, "--steps",
                                    "3", "--data-dir", str(glue_dir), "--dev-size", "12", "--out", str(out),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    recs = {r["method"]: r for r in (json.loads(p.read_text()) for p in _runs(out))}
    pool = load_task_data(TASKS["sst2"], str(glue_dir), dev_size=12).pool
    assert recs["full"]["textset"]["size"] == len(pool) and recs["full"]["dpc"] == 0  # filed under "all"
    assert recs["full"]["metrics"]["batch_size"] == min(64, len(pool))
    res = CliRunner().invoke(main, ["table", "--out", str(out), "--dd-ranking"])
    assert res.exit_code == 0, res.output
    assert "full (ceiling)" in res.output and "random: HLR (ceiling − it)" in res.output
    assert "DPC 2" in res.output and "DPC 0" not in res.output
    # a declaration lists the ceiling's runs where the run files them (dpc0), whatever DPC the entry names
    from dilmbench.grid import declared_runs

    grid = tmp_path / "grid.yaml"
    grid.write_text("runs:\n  - {preset: quick, tasks: [sst2], methods: [full], dpc: [5], sets: 1, inits: 2}\n")
    assert [r.relpath.split("/")[-2:] for r in declared_runs(grid)] == [["dpc0", "set00-init0.json"],
                                                                         ["dpc0", "set00-init1.json"]]


def test_robustness_ranks_per_model_and_names_a_win_only_on_the_choosing_model():
    import pandas as pd

    from dilmbench.tables import build_robustness

    # two learners, three methods, one cell each: learner "enc" (herding's own encoder) ranks herding > kcenters >
    # random, learner "other" the reverse
    rows = []
    for learner, order in (("org/enc", ["herding", "kcenters", "random"]), ("org/other", ["random", "kcenters", "herding"])):
        for rank, m in enumerate(order):
            for seed in range(2):
                rows.append({"task": "sst2", "evaluator": "finetune", "learner": learner, "method": m, "dpc": 5,
                             "set": seed, "init": 0, "score": 0.8 - 0.1 * rank + 0.01 * seed,
                             "chosen_with": "org/enc" if m in ("herding", "kcenters") else ""})
    per, agree, lines = build_robustness(pd.DataFrame(rows))
    assert per.loc["herding", "mean rank"] == "2.00 of 3.0" and per.loc["herding", "wins"] == 1
    assert per.loc["herding", "worst gain over random"].startswith("-20.0 (finetune:other")
    assert per.loc["herding", "best gain over random"].startswith("+20.0 (finetune:enc")
    assert per.loc["random", "runs"] == 4
    assert agree.iloc[0]["Kendall tau"] == "-1.00" and agree.iloc[0]["contexts"] == 1
    assert any(l.startswith("herding wins only where the learner is a model that chose") for l in lines)
    assert not any(l.startswith("random wins only") for l in lines)  # random chose with nothing


def test_table_robustness_reads_several_folders_and_refuses_cost_with_them(tmp_path):
    from click.testing import CliRunner

    from dilmbench.cli import main

    res = CliRunner().invoke(main, ["table", "--out", str(tmp_path / "a"), "--out", str(tmp_path / "b"), "--cost"])
    assert res.exit_code != 0 and "give --out once" in res.output and "Traceback" not in res.output


def test_two_evaluators_of_one_model_get_separate_columns():
    import pandas as pd

    from dilmbench.tables import build_table

    df = pd.DataFrame({"task": "sst2", "evaluator": ["finetune", "icl"], "learner": "org/m", "method": "random",
                       "dpc": 5, "set": 0, "init": 0, "score": [0.9, 0.6]})
    t = build_table(df)
    assert list(t.columns) == ["sst2 / finetune:m / DPC 5", "sst2 / icl:m / DPC 5"]
    assert t.iloc[0].tolist() == ["90.0 ± 0.0 (n=1)", "60.0 ± 0.0 (n=1)"]


def test_reference_numbers_join_the_table(tmp_path):
    import pandas as pd

    from dilmbench.tables import build_table, load_reference

    csv = tmp_path / "ref.csv"
    csv.write_text("task,learner,method,dpc,mean,std\nsst2,bert-base-uncased,herding,5,70.0,3.0\n")
    ref = load_reference(str(csv))
    r = ref.iloc[0]
    df = pd.DataFrame({"task": r["task"], "evaluator": "finetune", "learner": r["learner"], "method": "random",
                       "dpc": int(r["dpc"]), "set": [0], "init": 0, "score": [0.5]})
    t = build_table(df, ref)
    assert t.loc["paper: herding"].iloc[0] == "70.0 ± 3.0"
    bad = tmp_path / "bad.csv"
    bad.write_text("task,method\nsst2,x\n")
    with pytest.raises(DilmbenchError, match="lacks column"):
        load_reference(str(bad))
    with pytest.raises(DilmbenchError, match="neither"):
        load_reference("no-such.csv")


def test_paper_reference_shows_where_everything_matches(tmp_path):
    import pandas as pd

    from dilmbench.tables import build_table, load_reference

    paper = load_reference("paper")
    assert {"sst2", "qqp", "mnli"} <= set(paper["task"]) and {"finetune", "icl"} <= set(paper["evaluator"])
    df = pd.DataFrame({"task": "sst2", "evaluator": ["finetune", "finetune", "finetune", "icl"],
                       "learner": ["bert-base-uncased", "bert-base-uncased", "sentence-transformers/all-MiniLM-L6-v2",
                                   "bert-base-uncased"],
                       "method": "random", "dpc": [5, 20, 5, 5], "set": 0, "init": 0, "score": [0.6, 0.7, 0.5, 0.5]})
    t = build_table(df, paper)
    bert5, bert20 = "sst2 / finetune:bert-base-uncased / DPC 5", "sst2 / finetune:bert-base-uncased / DPC 20"
    assert t.loc["paper: random", bert5] == "58.1 ± 5.2" and t.loc["paper: random", bert20] == "70.3 ± 6.8"
    assert t.loc["paper: dilm", bert5] == "72.5 ± 5.9"
    # CondenseLM's reported cells: its open writer (Table 8, DPC 5 only) and GPT-4o (Table 4)
    assert t.loc["paper: condenselm", bert5] == "75.0 ± 4.2" and t.loc["paper: condenselm", bert20] == "–"
    assert t.loc["paper: condenselm_gpt4o", bert20] == "82.4 ± 2.5"
    assert t.loc["paper: full_data", bert5] == t.loc["paper: full_data", bert20] == "92.7"  # no DPC: every column
    # MiniLM has no paper column, and an ICL column of a model the paper did not prompt gets nothing
    assert t.loc["paper: random", "sst2 / finetune:all-MiniLM-L6-v2 / DPC 5"] == "–"
    assert t.loc["paper: random", "sst2 / icl:bert-base-uncased / DPC 5"] == "–"


def test_file_method_and_plugin(glue_dir, tiny_bert, tmp_path):
    sets = tmp_path / "mysets"
    sets.mkdir()
    for i in range(2):  # two different sets (the same set twice is refused)
        (sets / f"s{i}.jsonl").write_text('{"sentence": "good fun", "label": 1}\n{"sentence": "dull", "label": 0}\n'
                                          f'{{"sentence": "great {i}", "label": 1}}\n{{"sentence": "bad", "label": 0}}\n')
    plugin = tmp_path / "plug.py"
    plugin.write_text(
        "from dilmbench.api import SelectionMethod\n"
        "from dilmbench.registry import register_method\n"
        "@register_method('firstk')\n"
        "class FirstK(SelectionMethod):\n"
        "    '''The first k rows of each class.'''\n"
        "    def select(self, n, k, rng):\n"
        "        return list(range(k))\n")
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--methods", f"file:{sets},firstk", "--plugin", str(plugin),
                                    "--learners", tiny_bert, "--steps", "2", "--data-dir", str(glue_dir), "--dev-size", "10",
                                    "--dpc", "2", "--sets", "1", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert len(list((out / "runs" / "sst2" / "file-mysets").rglob("*.json"))) == 2
    assert len(list((out / "runs" / "sst2" / "firstk").rglob("*.json"))) == 1
    res = CliRunner().invoke(main, ["ls", "methods", "--plugin", str(plugin)])
    assert "firstk" in res.output and "The first k rows" in res.output


def _bad(args, tmp_path, glue_dir, tiny_bert, extra_env=None):
    out = tmp_path / "bad-out"
    base = ["run", "--preset", "quick", "--learners", tiny_bert, "--encoder", tiny_bert, "--data-dir", str(glue_dir),
            "--dev-size", "10", "--steps", "2", "--sets", "1", "--no-progress", "--out", str(out)]
    res = CliRunner().invoke(main, base + args, env=extra_env)
    return res, out


@pytest.mark.parametrize("args, message", [
    (["--task", "sst3"], "unknown task 'sst3' (did you mean 'sst2'?)"),
    (["--methods", "herdin"], "unknown method 'herdin' (did you mean 'herding'?)"),
    (["--methods", "file:"], "'file:' needs its path"),
    (["--methods", "herding:x"], "method 'herding' takes no ':' argument"),
    (["--evaluator", "finetun"], "unknown evaluator 'finetun' (did you mean 'finetune'?)"),
    (["--preset", "quik"], "unknown preset 'quik' (did you mean 'quick'?)"),
    (["--methods", "random", "--dpc", "500"], "DPC 500 is larger than class"),
    # the second task's problem is found before the first task's runs are written
    (["--task", "sst2,mnli", "--methods", "random", "--dpc", "45"], "DPC 45 is larger than class 'entailment' of mnli"),
    (["--methods", "random", "--dpc", "0"], "dpc must be positive"),
    (["--learners", "no-such/model"], "cannot load model 'no-such/model'"),
    (["--methods", "random", "--score-on", "dev", "--dev-size", "0"], "cannot score on the dev split of sst2: it is empty"),
])
def test_bad_input_is_one_line_and_writes_nothing(args, message, tmp_path, glue_dir, tiny_bert):
    res, out = _bad(args, tmp_path, glue_dir, tiny_bert)
    assert res.exit_code == 2, res.output
    lines = [l for l in res.output.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], res.output
    assert not out.exists() or not list(out.rglob("*.json"))


def test_missing_model_offline_says_how_to_get_it(tmp_path, glue_dir, tiny_bert, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res, _ = _bad(["--learners", "acme/not-cached-model"], tmp_path, glue_dir, tiny_bert)
    assert res.exit_code == 2 and "not in the local Hugging Face cache" in res.output and "hf download" in res.output


def test_malformed_set_file_plugin_errors_and_unwritable_out(tmp_path, glue_dir, tiny_bert):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"sentence": "x", "label": 7}\n')
    res, out = _bad(["--methods", f"file:{bad}"], tmp_path, glue_dir, tiny_bert)
    assert res.exit_code == 2 and "bad.jsonl:1: label 7" in res.output
    assert not list(out.rglob("*.json"))

    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_module_xyz\n")
    res, _ = _bad(["--plugin", str(broken)], tmp_path, glue_dir, tiny_bert)
    assert res.exit_code == 2 and "failed to import: ModuleNotFoundError" in res.output

    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    res, _ = _bad(["--plugin", str(empty)], tmp_path, glue_dir, tiny_bert)
    assert res.exit_code == 2 and "registered nothing" in res.output

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--learners", tiny_bert, "--data-dir", str(glue_dir),
                                    "--methods", "random", "--out", str(blocker / "sub")])
    assert res.exit_code == 2 and "is not writable" in res.output


def test_yaml_config_and_unknown_keys(tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("preset: quick\ndpc: [5, 10]\nsets: 3\nevaluator_options: {finetune: {steps: 50}}\n")
    cfg = build_config(None, str(good), {"inits": 2})
    assert cfg["preset"] == "quick" and cfg["dpc"] == [5, 10] and cfg["sets"] == 3 and cfg["inits"] == 2
    assert cfg["evaluator_options"]["finetune"]["steps"] == 50
    bad = tmp_path / "b.yaml"
    bad.write_text("dcp: [5]\n")
    with pytest.raises(DilmbenchError, match="unknown config key 'dcp' in config file \\(did you mean 'dpc'\\?\\)"):
        build_config(None, str(bad))


def test_table_without_results_is_an_error(tmp_path):
    res = CliRunner().invoke(main, ["table", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no results under" in res.output


def test_ls_lists_everything():
    res = CliRunner().invoke(main, ["ls"])
    assert res.exit_code == 0
    for name in ("sst2", "qqp", "mnli", "random", "kcenters", "kcenter_greedy", "herding", "finetune", "paper", "quick"):
        assert name in res.output


def test_results_follow_the_content_of_given_sets_and_the_code_of_plugins(glue_dir, tiny_bert, tmp_path):
    from dilmbench import registry

    sets = tmp_path / "given"
    sets.mkdir()
    rows = '{"sentence": "good fun", "label": 1}\n{"sentence": "dull", "label": 0}\n'
    (sets / "s0.jsonl").write_text(rows)
    plugin = tmp_path / "plug.py"
    code = ("from dilmbench.api import SelectionMethod\nfrom dilmbench.registry import register_method\n"
            "@register_method('firstk_v')\nclass FirstK(SelectionMethod):\n    '''First k.'''\n"
            "    def select(self, n, k, rng):\n        return list(range(k))\n")
    plugin.write_text(code)
    out = tmp_path / "out"

    def run(*extra):
        return CliRunner().invoke(main, ["run", "--preset", "quick", "--methods", f"file:{sets},firstk_v", "--plugin",
                                         str(plugin), "--learners", tiny_bert, "--steps", "2", "--data-dir",
                                         str(glue_dir), "--dev-size", "10", "--dpc", "1", "--sets", "1", "--out",
                                         str(out), "--no-progress", *extra])

    assert run().exit_code == 0
    assert "0 runs, 2 skipped" in run().output  # unchanged: nothing to do
    (sets / "s0.jsonl").write_text(rows.replace('"label": 1', '"label": 9').replace('"label": 0', '"label": 1')
                                   .replace('"label": 9', '"label": 0'))  # every label flipped
    res = run()
    assert res.exit_code != 0 and "made under another configuration" in res.output and "file-given" in res.output
    res = run("--overwrite", "changed")
    assert res.exit_code == 0 and "1 runs, 1 skipped" in res.output
    rec = json.loads(next((out / "runs" / "sst2" / "file-given").rglob("*.json")).read_text())
    assert rec["config"]["set_identity"]["content_hash"] == rec["textset"]["content_hash"]
    # the plugin's code is edited (as in a new process: the registry forgets the old class)
    plugin.write_text(code.replace("list(range(k))", "list(range(1, k + 1))"))
    registry.unload_plugin(plugin)
    res = run()
    assert res.exit_code != 0 and "made under another configuration" in res.output and "firstk_v" in res.output
    assert run("--overwrite", "changed").exit_code == 0
    rec = json.loads(next((out / "runs" / "sst2" / "firstk_v").rglob("*.json")).read_text())
    assert rec["config"]["set_identity"]["method"]["source_sha256"] == __import__("hashlib").sha256(
        plugin.read_bytes()).hexdigest()


def test_an_evaluator_without_hub_models_runs_through_the_cli(glue_dir, tiny_bert, tmp_path):
    plugin = tmp_path / "tfidf_eval.py"
    plugin.write_text('''
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from dilmbench.api import Evaluator
from dilmbench.registry import register_evaluator


@register_evaluator("tfidf_lr")
class TfidfLR(Evaluator):
    """TF-IDF + logistic regression trained on the set (no hub model)."""
    default_config = {"C": 1.0}

    def learners(self):
        return ["tfidf-lr"]

    def required_models(self):
        return []

    def evaluate(self, ctx, textset, learner, seed):
        clf = make_pipeline(TfidfVectorizer(), LogisticRegression(C=self.config["C"]))
        clf.fit([" ".join(t) for t in textset.texts], textset.labels)
        preds = clf.predict([" ".join(t) for t in ctx.data.texts(ctx.split)])
        acc = float((preds == ctx.data.labels(ctx.split)).mean())
        return {"score": acc, "accuracy": acc}
''')
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--methods", "random", "--evaluator", "tfidf_lr",
                                    "--plugin", str(plugin), "--data-dir", str(glue_dir), "--dev-size", "10",
                                    "--dpc", "3", "--sets", "2", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(p.read_text()) for p in (out / "runs" / "sst2" / "random" / "tfidf_lr").rglob("*.json")]
    assert len(recs) == 2 and all(r["learner"] == "tfidf-lr" and 0.5 < r["score"] <= 1 for r in recs)
    assert all(r["config"]["evaluator_code"]["source_sha256"] for r in recs)


def test_dilms_released_sets_are_read_as_published(glue_dir, tiny_bert, tmp_path):
    release = tmp_path / "mnli-dpc1"
    release.mkdir()
    rows = [{"premise": "the movie was good", "hypothesis": "the movie was good", "labels": 0},
            {"premise": "a fun cast", "hypothesis": "the plot", "labels": 1},
            {"premise": "it was fine", "hypothesis": "it was bad", "labels": 2}]
    for i in (0, 1, 10):  # dataset_10 sorts after dataset_1, not before dataset_2
        own = [{**rows[0], "premise": f"{rows[0]['premise']} {i}"}] + rows[1:]  # (a set twice would be refused)
        (release / f"dataset_{i}.json").write_text("".join(json.dumps(r) + "\n" for r in own))
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--task", "mnli", "--methods", f"file:{release}",
                                    "--learners", tiny_bert, "--steps", "2", "--data-dir", str(glue_dir),
                                    "--dev-size", "10", "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "read 3 set(s)" in res.output and "dataset_<i>.json" in res.output and "3 examples each" in res.output
    recs = sorted((out / "runs" / "mnli" / "file-mnli-dpc1").rglob("*.json"))
    assert len(recs) == 3 and json.loads(recs[0].read_text())["textset"]["class_counts"] == [1, 1, 1]
    metas = sorted((out / "sets" / "mnli" / "file-mnli-dpc1").rglob("*.meta.json"))
    assert json.loads(metas[2].read_text())["provenance"]["file"].endswith("dataset_10.json")


@pytest.mark.parametrize("args, message", [
    (["--steps", "0"], "steps must be a positive whole number"),
    (["--steps", "-1"], "steps must be a positive whole number"),
    (["--methods", "random,random"], "given more than once"),
])
def test_bad_counts_and_repeated_methods_are_refused_before_anything_is_written(args, message, tmp_path, glue_dir,
                                                                                tiny_bert):
    res, out = _bad(args if "--methods" in args else ["--methods", "random", *args], tmp_path, glue_dir, tiny_bert)
    assert res.exit_code != 0 and message in res.output and not list(out.rglob("*.json*"))


@pytest.mark.parametrize("yaml_text, message", [
    ("methods: 5\n", "methods must be a list of names"),
    ("tasks: 7\n", "tasks must be a list of names"),
    ("evaluator_options: 7\n", "evaluator_options must map a name"),
])
def test_wrongly_typed_yaml_values_get_one_line(yaml_text, message, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    res = CliRunner().invoke(main, ["run", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and message in res.output and "Traceback" not in res.output


def test_latex_table_writes_latex_plus_minus_and_minus():
    import pandas as pd

    from dilmbench.tables import build_table, render

    df = pd.DataFrame({"task": "sst2", "evaluator": "finetune", "learner": "m", "method": ["random", "dilm_vanilla"],
                       "dpc": 5, "set": 0, "init": 0, "score": [0.6, 0.5]})
    out = render(build_table(df), "latex")
    assert "±" not in out and "−" not in out and r"60.0 $\pm$ 0.0" in out and r"dilm\_vanilla $-$ random" in out


def test_yaml_takes_the_readmes_option_names_and_the_data_dir_variable_is_honoured(tmp_path, monkeypatch):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("preset: quick\ntask: mnli\nlearners: a/b,c/d\nsteps: 7\ndata_dir: /some/dir\nscore_on: dev\n")
    cfg = build_config(None, str(cfg_file))
    assert cfg["tasks"] == ["mnli"] and cfg["data_source"] == "/some/dir" and cfg["score_split"] == "dev"
    assert cfg["evaluator_options"]["finetune"]["learners"] == ["a/b", "c/d"]
    assert cfg["evaluator_options"]["finetune"]["steps"] == 7
    monkeypatch.setenv("DILMBENCH_DATA_DIR", "/env/dir")
    assert build_config("quick")["data_source"] == "/env/dir"  # no longer ignored under the quick preset
    assert build_config("quick", overrides={"data_source": "/flag"})["data_source"] == "/flag"  # a flag wins


def test_unequal_given_sets_and_unreadable_results_are_said(glue_dir, tiny_bert, tmp_path):
    sets = tmp_path / "uneven"
    sets.mkdir()
    (sets / "s.jsonl").write_text("".join(f'{{"sentence": "good {i}", "label": 1}}\n' for i in range(3))
                                  + '{"sentence": "bad", "label": 0}\n')
    res, out = _bad(["--methods", f"file:{sets}"], tmp_path, glue_dir, tiny_bert)
    assert res.exit_code != 0 and "unequal classes" in res.output and not list(out.rglob("*.json*"))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("method_options:\n  file:\n    allow_unequal: true\n")
    res, out = _bad(["--methods", f"file:{sets}", "--config", str(cfg)], tmp_path, glue_dir, tiny_bert)
    assert res.exit_code == 0, res.output
    files = sorted((out / "runs").rglob("*.json"))
    assert json.loads(files[0].read_text())["textset"]["class_counts"] == [1, 3]
    files[0].write_text(files[0].read_text()[:50])  # truncated
    res = CliRunner().invoke(main, ["table", "--out", str(out)])
    assert res.exit_code != 0 and "no readable results" in res.output and "1 file(s) are truncated" in res.output


def test_model_revision_is_the_snapshot_loaded(tiny_bert, tmp_path):
    import shutil

    from dilmbench.provenance import model_revision

    rev = model_revision(tiny_bert)
    assert rev and rev.startswith("local:")
    copy = tmp_path / "edited"
    shutil.copytree(tiny_bert, copy)
    (copy / "config.json").write_text((copy / "config.json").read_text().replace('"hidden_act"', '"hidden_act" ', 1))
    assert model_revision(str(copy)) != rev  # other weights or config: another revision
    assert model_revision("no-such-org/no-such-model") is None


def test_a_missing_given_set_is_said_before_any_model_or_data_is_loaded(tmp_path, monkeypatch):
    def no_loading(*a, **k):
        raise AssertionError("loaded data before checking the path")

    monkeypatch.setattr("dilmbench.runner.load_task_data", no_loading)
    monkeypatch.setattr("dilmbench.models.check_model_available", no_loading)
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--methods", "file:/no/such/sets",
                                    "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "'/no/such/sets' does not exist" in res.output


def test_progress_off_a_terminal_is_plain_lines_with_an_eta():
    import io

    from dilmbench.progress import PlainProgress

    ticks = iter(range(0, 1000, 10))  # each clock reading 10 s later
    out = io.StringIO()
    bar = PlainProgress(range(6), desc="fine-tune steps", every=25, stream=out, clock=lambda: next(ticks))
    for _ in bar:
        bar.set_postfix(loss="0.5")
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert lines[0] == "fine-tune steps: 3/6 after 40 s, ETA 40 s (loss=0.5)"  # 3 steps in 40 s: 3 more
    assert lines[-1].startswith("fine-tune steps: 6/6 after") and "ETA" not in lines[-1]


def test_results_record_their_data_and_do_not_outlive_a_change_to_it(glue_dir, tiny_bert, tmp_path):
    import shutil

    import pandas as pd

    data = tmp_path / "glue"
    shutil.copytree(glue_dir, data)
    out = tmp_path / "out"
    cfg = _cfg(data, tiny_bert, methods=["random"], dpc=[2], sets=1, inits=1)
    Runner(cfg, out, progress=False).run()
    fp = read_result(_runs(out)[0])["data"]["fingerprint"]
    assert fp["pool"]["rows"] + fp["dev"]["rows"] == 120 and fp["eval"]["rows"] == 40
    # the fixture is far smaller than GLUE's SST-2: the result says it is a subset, and so does the table
    assert fp["complete"] is False and fp["of_full"]["train"] == [120, 67_349]
    res = CliRunner().invoke(main, ["table", "--out", str(out)])
    assert res.exit_code == 0 and f"sst2 data {fp['id']}: SUBSET, not the paper's setting: train 120 of 67,349" in res.output
    assert "; score: accuracy\n" in res.output
    # one train text edited, same number of rows: the finished result is no longer valid for this data
    train = data / "sst2" / "train-00000-of-00001.parquet"
    rows = pd.read_parquet(train)
    rows.loc[rows.index[-1], "sentence"] += " indeed"
    rows.to_parquet(train)
    with pytest.raises(DilmbenchError, match=r"1 finished result\(s\) .*made on other data"):
        Runner(cfg, out, progress=False).run()
    said = []
    assert Runner(cfg, out, overwrite="changed", progress=False, log=said.append).run()["done"] == 1
    assert any("made on other data" in m for m in said)
    assert read_result(_runs(out)[0])["data"]["fingerprint"]["id"] != fp["id"]


def test_runs_on_different_data_are_never_one_cell():
    import pandas as pd

    from dilmbench.tables import build_table

    df = pd.DataFrame({"task": "qqp", "evaluator": "finetune", "learner": "m", "method": "random", "dpc": 5,
                       "set": [0, 1, 0, 1], "init": 0, "score": [0.5, 0.7, 0.8, 0.8],
                       "data": ["aaa", "aaa", "bbb", "bbb"], "data_note": "x"})
    t = build_table(df)
    assert list(t.columns) == ["qqp [data aaa] / m / DPC 5", "qqp [data bbb] / m / DPC 5"]
    assert list(t.loc["random"]) == ["60.0 ± 10.0 (n=2)", "80.0 ± 0.0 (n=2)"]


def test_a_result_from_before_fingerprints_keeps_its_place_only_if_its_data_is_provably_the_same(tiny_bert, tmp_path):
    from dilmbench.provenance import git_commit

    head = git_commit()
    if head is None:
        pytest.skip("not a git checkout: the proof reads the embedded data's git history")
    out = tmp_path / "out"
    cfg = build_config("quick", overrides={"tasks": ["sst2"], "methods": ["random"], "dpc": [2], "sets": 1, "inits": 1,
                                           "encoder": tiny_bert, "pooling": "mean", "data_source": "embedded",
                                           "evaluator_options": {"finetune": {"learners": [tiny_bert], "steps": 1}}})
    Runner(cfg, out, progress=False).run()
    path = _runs(out)[0]

    def from_before(commit):  # as a result written before results recorded their data's fingerprint
        rec = read_result(path)
        rec["data"].pop("fingerprint")
        rec["environment"]["git_commit"] = commit
        path.write_text(json.dumps(rec))

    from_before(head)  # the embedded files then are the files now: kept, and it says how it got its fingerprint
    before = path.read_text()
    planner = Runner(cfg, out, progress=False)
    planner.preflight()
    planner.plan()
    assert path.read_text() == before  # planning writes nothing; the run records the fingerprint
    assert Runner(cfg, out, progress=False).run()["done"] == 0
    rec = read_result(path)
    assert rec["data"]["fingerprint"]["complete"] is True and "equal git blobs" in rec["data"]["fingerprint_source"]
    from_before("0" * 40)  # a commit this checkout does not have: nothing proves what it read
    with pytest.raises(DilmbenchError, match="records no data fingerprint and its data cannot be proven the same"):
        Runner(cfg, out, progress=False).run()


def test_a_result_does_not_outlive_a_new_snapshot_of_its_learner(glue_dir, tiny_bert, tmp_path):
    import shutil

    from dilmbench.provenance import model_revision

    learner = tmp_path / "learner"
    shutil.copytree(tiny_bert, learner)
    out = tmp_path / "out"
    cfg = _cfg(glue_dir, tiny_bert, methods=["random"], dpc=[2], sets=1, inits=1,
               evaluator_options={"finetune": {"learners": [str(learner)], "steps": 1}})
    Runner(cfg, out, progress=False).run()
    before = read_result(_runs(out)[0])["models"]["learner"]["revision"]
    assert before and Runner(cfg, out, progress=False).run()["done"] == 0  # same snapshot: reused
    conf = json.loads((learner / "config.json").read_text())
    conf["layer_norm_eps"] = 1e-6  # a new snapshot of the same model id
    (learner / "config.json").write_text(json.dumps(conf))
    model_revision.cache_clear()
    with pytest.raises(DilmbenchError, match="another snapshot"):
        Runner(cfg, out, progress=False).run()
    assert Runner(cfg, out, overwrite="changed", progress=False).run()["done"] == 1
    assert read_result(_runs(out)[0])["models"]["learner"]["revision"] != before


def test_a_given_set_scores_the_same_from_any_folder(glue_dir, tiny_bert, tmp_path):
    import shutil

    from dilmbench.runner import derive_seed

    sets = tmp_path / "first-folder"
    sets.mkdir()
    rows = [{"sentence": s, "label": y} for s, y in (("good fun", 1), ("bad dull", 0), ("great", 1), ("awful", 0))]
    (sets / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (sets / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[::-1][:2] + rows[:2][::-1]))
    renamed = tmp_path / "another-name"
    shutil.copytree(sets, renamed)
    (renamed / "a.jsonl").rename(renamed / "z.jsonl")  # and the files in another order

    def scores(folder, **opts):
        out = tmp_path / f"out-{folder.name}-{len(opts)}"
        cfg = _cfg(glue_dir, tiny_bert, methods=[f"file:{folder}"], inits=2,
                   method_options={"file": opts} if opts else {})
        Runner(cfg, out, progress=False).run()
        recs = [read_result(p) for p in _runs(out)]
        return {(r["textset"]["content_hash"], r["init_index"]): (r["score"], r["seeds"]["init"]) for r in recs}, recs

    first, recs = scores(sets)
    again, _ = scores(renamed)
    assert len(first) == 4 and first == again  # same content, same seeds, same scores
    digest = recs[0]["textset"]["content_hash"]
    assert first[(digest, 1)][1] == derive_seed(0, "sst2", "content", digest, 1)
    assert "content" in recs[0]["seeds"]["derivation"]
    # seed_by: name keeps the old derivation (and the identity results made before had)
    named, recs = scores(sets, seed_by="name")
    r = next(r for r in recs if r["set_index"] == 0 and r["init_index"] == 1)
    assert r["seeds"]["init"] == derive_seed(0, "sst2", "file-first-folder", r["dpc"], 0, 1)
    assert "seed_by" not in r["config"]["set_identity"]["method"]["config"]
    assert named != first


def test_the_same_given_set_twice_is_refused(glue_dir, tiny_bert, tmp_path):
    sets = tmp_path / "dupes"
    sets.mkdir()
    body = '{"sentence": "good", "label": 1}\n{"sentence": "bad", "label": 0}\n'
    (sets / "a.jsonl").write_text(body)
    (sets / "b.jsonl").write_text(body)
    res, out = _bad(["--methods", f"file:{sets}"], tmp_path, glue_dir, tiny_bert)
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 2 and len(lines) == 1 and "hold the same examples" in lines[0]


SLOW_EVALUATOR = '''
import time

from dilmbench.api import Evaluator
from dilmbench.registry import register_evaluator


@register_evaluator("slow_majority")
class SlowMajority(Evaluator):
    """Predicts the set's majority class after a pause (a run that takes time, deterministically)."""
    default_config = {"pause": 0.4}
    def learners(self):
        return ["majority"]
    def required_models(self):
        return []
    def evaluate(self, ctx, textset, learner, seed):
        time.sleep(self.config["pause"])
        top = max(set(textset.labels), key=textset.labels.count)
        return {**ctx.task.score(ctx.data.labels(ctx.split), [top] * len(ctx.data.labels(ctx.split))),
                "seed_seen": seed}
'''


def test_two_runs_on_one_out_split_the_grid(glue_dir, tmp_path):
    import subprocess
    import sys

    plugin = tmp_path / "slow.py"
    plugin.write_text(SLOW_EVALUATOR)
    args = ["run", "--preset", "quick", "--plugin", str(plugin), "--evaluator", "slow_majority", "--methods", "random",
            "--dpc", "2,3", "--sets", "4", "--inits", "2", "--data-dir", str(glue_dir), "--dev-size", "10",
            "--no-progress"]
    cmd = [sys.executable, "-c", "from dilmbench.cli import main; main()"]
    shared = tmp_path / "shared"
    procs = [subprocess.Popen(cmd + args + ["--out", str(shared)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    said = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(  # whole, so a failure says what happened
        f"process {i}: exit {p.returncode}; stderr:\n{err[-3000:]}" for i, (p, (_, err)) in enumerate(zip(procs, said)))
    done = [int(re.search(r"done in \d+s: (\d+) runs", out).group(1)) for out, _ in said]
    assert sum(done) == 16 and min(done) > 0, said  # every run once, and both did some
    assert not list((shared / ".claims").glob("*"))  # every claim released
    alone = tmp_path / "alone"
    res = subprocess.run(cmd + args + ["--out", str(alone)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    files = sorted(p.relative_to(alone) for p in (alone / "runs").rglob("*.json"))
    assert files == sorted(p.relative_to(shared) for p in (shared / "runs").rglob("*.json")) and len(files) == 16
    for f in files:
        a, b = read_result(alone / f), read_result(shared / f)
        assert (a["score"], a["config_hash"], a["seeds"]) == (b["score"], b["config_hash"], b["seeds"])
    for f in sorted((alone / "sets").rglob("*.jsonl")):  # the sets too, each made once
        assert (shared / f.relative_to(alone)).read_text() == f.read_text()


def test_a_dead_processs_claim_does_not_block(tmp_path):
    import subprocess
    import sys

    from dilmbench.claims import Claims

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    mine = Claims(tmp_path)
    assert mine.take("runs/a.json")
    other = Claims(tmp_path)
    other.me = {**other.me, "pid": pid}  # as a process that has since died
    assert not other.take("runs/a.json")  # held by a live process (this one)
    mine.release("runs/a.json")
    assert other.take("runs/b.json")  # the dead process takes b ...
    assert mine.take("runs/b.json")  # ... and its claim does not block anyone once it is gone
