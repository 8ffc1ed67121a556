"""The batched path (R runs as one model) against the one-at-a-time fast path with one padded batch per step.

Tolerance, float32: per-step losses within 1e-5 (absolute) and final logits within 1e-4 of each run trained alone,
dropout on (each run's masks from its own stream). bfloat16: per-step losses within 0.02, the same predictions."""
import numpy as np
import pytest
import torch

from dilmbench.batched import NotBatchable, train_classifiers_batched
from dilmbench.fastpath import train_classifier_fast
from dilmbench.finetune import FinetuneRecipe, load_classifier, logits_of
from dilmbench.models import load_tokenizer

POS = ["good fun movie", "great cast and a lovely story", "the film was brilliant and warm", "charming",
       "a superb and moving plot", "fine fun"]
NEG = ["bad dull plot", "awful", "tedious and flat", "ugly messy boring film", "a weak and poor cast", "dull"]


def sets(k):
    """k sets of 4 texts (2 per class) of different lengths, as a cell's sets are."""
    out = []
    for i in range(k):
        texts = [(POS[i],), (NEG[i],), (POS[(i + 2) % 6],), (NEG[(i + 3) % 6],)]
        out.append((texts, [1, 0, 1, 0]))
    return out


def streams_reach_attention(path) -> bool:
    from dilmbench.fastpath import DropoutStream, use_stream_dropout

    return not use_stream_dropout(load_classifier(path, 2, 0, "cpu"), DropoutStream(0))["attention_dropout_from_torch"]


def alone_and_batched(path, dtype, steps=8, runs=3):
    if not streams_reach_attention(path):
        pytest.skip("this transformers applies BERT's attention dropout inside torch's sdpa: the batched path refuses it")
    tok = load_tokenizer(path)
    recipe = FinetuneRecipe(steps=steps, lr=5e-3, micro_batch_tokens=0)
    data, seeds = sets(runs), [11 + r for r in range(runs)]
    alone, alone_models = [], []
    for (texts, labels), seed in zip(data, seeds):
        m = load_classifier(path, 2, seed, "cpu")
        alone.append(train_classifier_fast(m, tok, texts, labels, recipe, seed, "cpu", dtype=dtype))
        alone_models.append(m)
    models = [load_classifier(path, 2, s, "cpu") for s in seeds]
    together = train_classifiers_batched(models, tok, data, recipe, seeds, "cpu", dtype=dtype)
    probe = [t for s in data for t in s[0]]
    logits = [(logits_of(a, tok, probe, recipe, "cpu"), logits_of(b, tok, probe, recipe, "cpu"))
              for a, b in zip(alone_models, models)]
    return alone, together, logits


def test_batched_float32_gives_each_run_what_it_gets_alone(tiny_bert):
    alone, together, logits = alone_and_batched(tiny_bert, torch.float32)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(b, a, atol=1e-5)
    for a, b in logits:
        np.testing.assert_allclose(b, a, atol=1e-4)
    assert len({tuple(np.round(x, 6)) for x in together}) == 3  # three different runs, not one run three times


def test_batched_bf16_stays_close(tiny_bert):
    alone, together, logits = alone_and_batched(tiny_bert, torch.bfloat16)
    for a, b in zip(alone, together):
        assert np.abs(np.asarray(a) - np.asarray(b)).max() < 0.02
    for a, b in logits:
        assert (a.argmax(1) == b.argmax(1)).all()


def test_batched_roberta_and_the_models_come_back_whole(tiny_roberta):
    alone, together, _ = alone_and_batched(tiny_roberta, torch.float32, steps=4, runs=2)
    for a, b in zip(alone, together):
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_models_it_cannot_group_are_refused_untouched(tiny_xlnet):
    tok = load_tokenizer(tiny_xlnet)
    models = [load_classifier(tiny_xlnet, 2, s, "cpu") for s in (1, 2)]
    vocab = models[0].get_input_embeddings().weight.shape[0]
    with pytest.raises(NotBatchable, match="outside Linear"):
        train_classifiers_batched(models, tok, sets(2), FinetuneRecipe(steps=2, micro_batch_tokens=0), [1, 2], "cpu")
    assert models[0].get_input_embeddings().weight.shape[0] == vocab  # the compact embedding was put back


def test_batched_needs_one_padded_batch_and_one_set_size(tiny_bert):
    tok = load_tokenizer(tiny_bert)
    models = [load_classifier(tiny_bert, 2, s, "cpu") for s in (1, 2)]
    with pytest.raises(ValueError, match="micro_batch_tokens 0"):
        train_classifiers_batched(models, tok, sets(2), FinetuneRecipe(steps=2, micro_batch_tokens=512), [1, 2], "cpu")
    uneven = [sets(1)[0], (sets(1)[0][0][:2], [1, 0])]
    with pytest.raises(ValueError, match="one size"):
        train_classifiers_batched(models, tok, uneven, FinetuneRecipe(steps=2, micro_batch_tokens=0), [1, 2], "cpu")


def _cfg(glue_dir, tiny_bert, **evaluator):
    from dilmbench.config import build_config

    return build_config("quick", overrides={
        "tasks": ["sst2"], "methods": ["random"], "dpc": [2], "sets": 2, "inits": 3, "encoder": tiny_bert,
        "data_source": str(glue_dir), "dev_size": 10,
        "evaluator_options": {"finetune": {"learners": [tiny_bert], "steps": 4, "micro_batch_tokens": 0, **evaluator}}})


def test_runner_hands_batches_and_writes_one_result_per_run(glue_dir, tiny_bert, tmp_path):
    if not streams_reach_attention(tiny_bert):
        pytest.skip("this transformers applies BERT's attention dropout inside torch's sdpa: runs go one at a time")
    import json

    from dilmbench.runner import Runner, read_result

    alone = tmp_path / "alone"
    assert Runner(_cfg(glue_dir, tiny_bert), alone, progress=False).run()["done"] == 6
    together = tmp_path / "together"
    assert Runner(_cfg(glue_dir, tiny_bert), together, progress=False, batch_runs=4).run()["done"] == 6
    files = sorted((together / "runs").rglob("*.json"))
    assert len(files) == 6 and all(read_result(f) is not None for f in files)
    recs = [json.loads(f.read_text()) for f in files]
    # 6 runs of one (DPC, learner) in batches of 4: one batch of 4, one of 2, each trained as one model
    assert sorted(r["metrics"]["batched_runs"] for r in recs) == [2, 2, 4, 4, 4, 4]
    assert all(r["execution"]["batch_runs"] == 4 for r in recs)
    for f in files:  # the same identity as the one-at-a-time runs, and their losses within the bf16 tolerance
        a, b = read_result(alone / f.relative_to(together)), read_result(f)
        assert a["config_hash"] == b["config_hash"]
        assert abs(a["metrics"]["train_loss_last"] - b["metrics"]["train_loss_last"]) < 0.02
    # a rerun finds them done
    assert Runner(_cfg(glue_dir, tiny_bert), together, progress=False, batch_runs=4).run()["skipped"] == 6


def test_a_kill_mid_grid_loses_only_the_batch_in_flight(glue_dir, tiny_bert, tmp_path, monkeypatch):
    from dilmbench.registry import EVALUATORS
    from dilmbench.runner import Runner

    finetune = EVALUATORS.get("finetune")
    real, calls = finetune.evaluate_many, []

    def dies_on_the_second_batch(self, ctx, jobs):
        calls.append(len(jobs))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, ctx, jobs)

    monkeypatch.setattr(finetune, "evaluate_many", dies_on_the_second_batch)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        Runner(_cfg(glue_dir, tiny_bert), out, progress=False, batch_runs=2).run()
    assert len(list((out / "runs").rglob("*.json"))) == 2  # the first batch, written whole
    assert not list(out.rglob("*.tmp"))
    monkeypatch.undo()
    counts = Runner(_cfg(glue_dir, tiny_bert), out, progress=False, batch_runs=2).run()
    assert counts["skipped"] == 2 and counts["done"] == 4


def test_batch_runs_through_workers(glue_dir, tiny_bert, tmp_path):
    if not streams_reach_attention(tiny_bert):
        pytest.skip("this transformers applies BERT's attention dropout inside torch's sdpa: runs go one at a time")
    from dilmbench.runner import Runner, read_result

    out = tmp_path / "w"
    assert Runner(_cfg(glue_dir, tiny_bert), out, progress=False, batch_runs=3, workers=2,
                  threads_per_worker=1).run()["done"] == 6
    recs = [read_result(f) for f in sorted((out / "runs").rglob("*.json"))]
    assert len(recs) == 6 and {r["metrics"]["batched_runs"] for r in recs} == {3}
