import numpy as np
import pytest
import torch

from dilmbench.api import EvalContext
from dilmbench.registry import EVALUATORS
from dilmbench.tasks import TASKS, load_task_data
from dilmbench.textset import TextSet

from dilmbench.evaluators.icl import build_prefix, format_example, label_words


def test_prompt_for_single_and_pair_tasks():
    sst2, mnli = TASKS["sst2"], TASKS["mnli"]
    words = label_words(sst2, None)
    assert words == ["negative", "positive"]
    p = build_prefix(sst2.text_fields, [(("a fine film ",), 1), (("dull",), 0)], words)
    assert p == "sentence: a fine film\nlabel: positive\n\nsentence: dull\nlabel: negative\n\n"
    assert format_example(sst2.text_fields, ("so good",), None) == "sentence: so good\nlabel:"
    q = format_example(mnli.text_fields, ("A man sleeps.", "Nobody sleeps."), "contradiction")
    assert q == "premise: A man sleeps.\nhypothesis: Nobody sleeps.\nlabel: contradiction\n\n"
    assert label_words(sst2, {"sst2": ["terrible", "great"]}) == ["terrible", "great"]


def brute_force(model, tok, prefix, query, word):
    ids = tok(prefix)["input_ids"] + tok(query, add_special_tokens=False)["input_ids"]
    w = tok(" " + word, add_special_tokens=False)["input_ids"]
    full = torch.tensor([ids + w])
    with torch.no_grad():
        logp = torch.log_softmax(model(full).logits.float(), -1)[0]
    return sum(float(logp[len(ids) + j - 1, t]) for j, t in enumerate(w))


@pytest.mark.parametrize("prefix_cache", [True, False])
@pytest.mark.parametrize("narrow_logits", [True, False])
@pytest.mark.parametrize("words", [["bad", "good fun"], ["bad", "good"]])
def test_label_word_scoring_matches_one_sequence_at_a_time(tiny_gpt, prefix_cache, narrow_logits, words):
    # ["bad", "good fun"]: a two-token label word, every token scored; ["bad", "good"]: one token each, so the
    # narrow path scores both labels from one sequence per query
    ev = EVALUATORS.get("icl")(learners=[tiny_gpt], backend="transformers", prefix_cache=prefix_cache, batch_size=3,
                               narrow_logits=narrow_logits)
    prefix = "sentence: good fun\nlabel: positive\n\nsentence: dull\nlabel: negative\n\n"
    queries = ["sentence: a great film\nlabel:", "sentence: the plot was bad and dull and flat\nlabel:", "sentence: it\nlabel:",
               "sentence: good\nlabel:"]
    got = ev.score_transformers(tiny_gpt, prefix, queries, words, "cpu")
    model, tok = ev._hf(tiny_gpt, "cpu")
    want = np.array([[brute_force(model, tok, prefix, q, w) for w in words] for q in queries])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_order_is_reproducible_from_the_seed_and_transformers_backend_end_to_end(glue_dir, tiny_gpt, tmp_path):
    data = load_task_data(TASKS["sst2"], str(glue_dir), dev_size=10)
    ctx = EvalContext(data=data, device="cpu", cache_dir=tmp_path, progress=False)
    ev = EVALUATORS.get("icl")(learners=[tiny_gpt], backend="transformers", max_eval=12)
    ts = TextSet(task="sst2", text_fields=("sentence",), texts=data.texts("pool")[:6], labels=data.labels("pool")[:6])
    a, b, c = (ev.evaluate(ctx, ts, tiny_gpt, seed=s) for s in (1, 1, 2))
    assert a["demo_order"] == b["demo_order"] and a["prompt_sha256"] == b["prompt_sha256"] and a["score"] == b["score"]
    assert a["demo_order"] != c["demo_order"] and a["prompt_sha256"] != c["prompt_sha256"]
    assert sorted(a["demo_order"]) == list(range(6))
    assert a["backend"] == "transformers" and a["dtype"] == "float32" and a["eval_examples"] == 12
    assert "label word" in a["scoring_rule"]
    # the score is the accuracy of the label word with the highest summed log-prob, recomputed here
    prefix = build_prefix(("sentence",), [(ts.texts[i], ts.labels[i]) for i in a["demo_order"]], a["label_words"])
    queries = [format_example(("sentence",), t, None) for t in data.texts("eval")[:12]]
    scores = ev.score_transformers(tiny_gpt, prefix, queries, a["label_words"], "cpu")
    assert a["score"] == float((scores.argmax(1) == data.labels("eval")[:12]).mean())


def test_runner_with_icl_records_backend(glue_dir, tiny_gpt, tmp_path):
    import json

    from dilmbench.config import build_config
    from dilmbench.runner import Runner

    cfg = build_config("quick", overrides={"tasks": ["mnli"], "methods": ["random"], "dpc": [1], "sets": 1, "inits": 2,
                                           "data_source": str(glue_dir), "dev_size": 12, "evaluator": "icl",
                                           "evaluator_options": {"icl": {"learners": [tiny_gpt], "backend": "transformers",
                                                                         "max_eval": 9}}})
    Runner(cfg, tmp_path / "out", progress=False).run()
    recs = [json.loads(p.read_text()) for p in sorted((tmp_path / "out" / "runs").rglob("*.json"))]
    assert len(recs) == 2 and {r["evaluator"] for r in recs} == {"icl"}
    assert recs[0]["metrics"]["backend"] == "transformers" and recs[0]["models"]["learner"]["id"] == tiny_gpt
    assert recs[0]["metrics"]["demo_order"] != recs[1]["metrics"]["demo_order"] or len(recs[0]["metrics"]["demo_order"]) < 3


def test_prompt_longer_than_the_context_is_a_clear_error(tiny_gpt):
    from dilmbench.errors import DilmbenchError

    ev = EVALUATORS.get("icl")(learners=[tiny_gpt], backend="transformers")
    with pytest.raises(DilmbenchError, match="exceeds .* context of 512"):
        ev.score_transformers(tiny_gpt, "sentence: good\nlabel: positive\n\n" * 200, ["sentence: dull\nlabel:"], ["bad", "good"], "cpu")


def test_a_prompt_too_long_for_the_model_skips_its_runs_and_the_grid_goes_on(glue_dir, tiny_gpt_ctx48, tmp_path):
    import json

    from click.testing import CliRunner

    from dilmbench.cli import main

    out = tmp_path / "out"
    args = ["run", "--preset", "quick", "--task", "sst2", "--methods", "random", "--dpc", "4,1", "--sets", "2",
            "--evaluator", "icl", "--learners", tiny_gpt_ctx48, "--data-dir", str(glue_dir), "--dev-size", "12",
            "--out", str(out), "--no-progress"]
    res = CliRunner().invoke(main, args)
    # DPC 4 (planned first) never fits 48 tokens: said before it starts, its runs skipped, DPC 1's still made
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "warning: sst2 random DPC 4" in res.output  # (the estimate, from mean lengths, may warn of DPC 1 too)
    assert "2 run(s) not made because their set does not fit the learner" in res.output
    assert res.output.count("not made (does not fit its learner): runs/sst2/random") == 2
    made = sorted(out.joinpath("runs").rglob("*.json"))
    assert len(made) == 2 and {json.loads(p.read_text())["dpc"] for p in made} == {1}
    # accepted with --skip-unfit: nothing left to make, exit 0, the two still listed
    res = CliRunner().invoke(main, args + ["--skip-unfit"])
    assert res.exit_code == 0, res.output
    assert "2 not made (their set does not fit the learner)" in res.output


def test_check_fits_counts_the_runs_own_prompt_in_the_learners_tokens(glue_dir, tiny_gpt_ctx48, tmp_path):
    data = load_task_data(TASKS["sst2"], str(glue_dir), dev_size=12)
    ctx = EvalContext(data=data, device="cpu", cache_dir=tmp_path, progress=False)
    ev = EVALUATORS.get("icl")(learners=[tiny_gpt_ctx48], backend="transformers")
    short = TextSet(task="sst2", text_fields=("sentence",), texts=[("good",), ("bad",)], labels=[1, 0])
    assert ev.check_fits(ctx, short, tiny_gpt_ctx48, seed=0) is None
    ev.evaluate(ctx, short, tiny_gpt_ctx48, seed=0)  # what fits is scored
    long = TextSet(task="sst2", text_fields=("sentence",), texts=[("good " * 20,), ("bad " * 20,)], labels=[1, 0])
    why = ev.check_fits(ctx, long, tiny_gpt_ctx48, seed=0)
    assert why is not None and "context of 48" in why
    n = int(why.split("prompt of ")[1].split()[0])
    assert n >= 2 * (20 + 3)  # both demonstrations' words and their "sentence:", "label:", label word


def test_vllm_backend_agrees_with_transformers(tiny_gpt_head64):
    tiny_gpt = tiny_gpt_head64
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # not installed here: the agreement benchmark covers it where vLLM runs
        pytest.skip(f"vllm is not importable ({type(exc).__name__}); install dilmbench[vllm] to run this test")
    prefix = "sentence: good fun\nlabel: positive\n\n"
    queries = ["sentence: a great film\nlabel:", "sentence: dull\nlabel:"]
    hf = EVALUATORS.get("icl")(learners=[tiny_gpt], backend="transformers")
    vl = EVALUATORS.get("icl")(learners=[tiny_gpt], backend="vllm")  # one engine, kept across calls
    # one-token label words (next-token log-probs with the prefix cache) and a two-token one (prompt log-probs)
    for words in (["bad", "good"], ["bad", "good fun"]):
        np.testing.assert_allclose(hf.score_transformers(tiny_gpt, prefix, queries, words, "cpu"),
                                   vl.score_vllm(tiny_gpt, prefix, queries, words, "cpu"), atol=1e-2)
    vl.close()
    assert not vl._models


def test_demo_perplexity_is_recorded_and_an_absurd_one_stops_the_evaluator(glue_dir, tiny_gpt, tmp_path):
    import math

    from dilmbench.errors import DilmbenchError
    from dilmbench.models import load_tokenizer

    data = load_task_data(TASKS["sst2"], str(glue_dir), dev_size=10)
    ctx = EvalContext(data=data, device="cpu", cache_dir=tmp_path, progress=False)
    ts = TextSet(task="sst2", text_fields=("sentence",), texts=data.texts("pool")[:4], labels=data.labels("pool")[:4])
    ev = EVALUATORS.get("icl")(learners=[tiny_gpt], backend="transformers", max_eval=4)
    res = ev.evaluate(ctx, ts, tiny_gpt, seed=0)
    # a random 2-layer model over a ~40-word vocabulary: perplexity near the vocabulary size, not 1 and not 1,000s
    vocab = len(load_tokenizer(tiny_gpt))
    assert 2 < res["demo_perplexity"] < 5 * vocab
    model, tok = ev._hf(tiny_gpt, "cpu")
    prefix = build_prefix(("sentence",), [(ts.texts[i], ts.labels[i]) for i in res["demo_order"]], res["label_words"])
    prefix_ids = torch.tensor([tok(prefix)["input_ids"]])
    with torch.inference_mode():
        assert res["demo_perplexity"] == pytest.approx(math.exp(float(model(input_ids=prefix_ids, labels=prefix_ids).loss)))
    strict = EVALUATORS.get("icl")(learners=[tiny_gpt], backend="transformers", max_eval=4, max_demo_perplexity=1.5)
    with pytest.raises(DilmbenchError, match=r"perplexity \d+ \(limit 2\).*broken"):
        strict.evaluate(ctx, ts, tiny_gpt, seed=0)


def test_the_backend_is_checked_when_built_and_picked_only_when_used(monkeypatch):
    """Planning a grid builds the evaluator: a bad backend stops it there, and the pick, which imports torch (and
    perhaps vllm), waits for a run."""
    from dilmbench.errors import DilmbenchError
    from dilmbench.evaluators.icl import ICLEvaluator

    with pytest.raises(DilmbenchError, match="icl backend must be auto, transformers or vllm, got 'torch'"):
        ICLEvaluator(backend="torch")
    picked = []
    monkeypatch.setattr(ICLEvaluator, "_pick_backend", staticmethod(lambda r: picked.append(r) or "transformers"))
    ev = ICLEvaluator(backend="auto")
    assert picked == []
    assert ev.backend == "transformers" and ev.backend == "transformers" and picked == ["auto"]
