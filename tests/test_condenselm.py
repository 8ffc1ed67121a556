"""CondenseLM (methods/condenselm.py): its reward arithmetic by hand on fixtures, and the whole method on tiny models."""
import numpy as np
import pytest

from dilmbench.api import MethodContext
from dilmbench.errors import DilmbenchError
from dilmbench.methods.condenselm import best_of_n, coverage, representability, retrieval_filter
from dilmbench.registry import METHODS
from dilmbench.tasks import TASKS, load_task_data

REP = np.array([[0.9, 0.1], [0.3, 0.7], [0.15, 0.85], [0.6, 0.4]])
COV = np.array([[0.5, 0.5], [0.6, 0.4], [0.1, 0.9], [0.2, 0.8]])
Y = [0, 1, 1, 0]


def test_rewards_are_the_papers_equations_by_hand():
    assert representability(REP, Y).tolist() == pytest.approx([0.9, 0.7, 0.85, 0.6])  # Eq. 1: M_rep(x)_y
    # Eq. 2: M_rep(x)_y - M_cov(x)_y
    assert coverage(REP, COV, Y).tolist() == pytest.approx([0.4, 0.3, -0.05, 0.4])
    # before anything is written M_cov knows nothing: 1/C for every label
    assert coverage(REP, None, Y).tolist() == pytest.approx([0.4, 0.2, 0.35, 0.1])
    # Eq. 3 with the paper's thresholds 0.8 / 0.3: only row 0 is both representative and uncovered
    keep = retrieval_filter(representability(REP, Y), coverage(REP, COV, Y), 0.8, 0.3)
    assert keep.tolist() == [True, False, False, False]
    # Eq. 4, w = 0.2: candidate sums 0.9+0.2*0.4 + 0.7+0.2*0.3 = 1.74 against 0.85-0.01 + 0.6+0.08 = 1.52
    a = representability(REP[:2], Y[:2]) + 0.2 * coverage(REP[:2], COV[:2], Y[:2])
    b = representability(REP[2:], Y[2:]) + 0.2 * coverage(REP[2:], COV[2:], Y[2:])
    assert a.sum() == pytest.approx(1.74) and b.sum() == pytest.approx(1.52)
    assert best_of_n([b, a]) == 1 and best_of_n([None, b]) == 1
    with pytest.raises(DilmbenchError, match="no candidate"):
        best_of_n([None, None])


def _ctx(task, glue_dir, tiny_bert, tmp_path):
    data = load_task_data(TASKS[task], str(glue_dir), dev_size=12)
    return MethodContext(data=data, encoder=tiny_bert, pooling="mean", device="cpu", cache_dir=tmp_path / "cache",
                         progress=False)


def _method(tiny_gpt, tiny_bert, **kw):
    return METHODS.get("condenselm")(**{"generator": tiny_gpt, "reward_model": tiny_bert, "max_new_tokens": 6,
                                        "min_new_tokens": 2, "feature_max_new_tokens": 5, "batch_size": 8,
                                        "subset_per_class": 4, "condensed_per_class": 2, "candidates": 3,
                                        "rep_batch_size": 8, "max_length": 32, **kw})


@pytest.mark.parametrize("task", ["sst2", "mnli"])
def test_condenselm_writes_dpc_per_class_in_ceil_dpc_over_k_iterations(task, glue_dir, tiny_bert, tiny_gpt, tmp_path,
                                                                       monkeypatch):
    from dilmbench.generation import TextGenerator

    prompts = []
    real = TextGenerator.generate

    def spy(self, ps, sampling, seed, n=1):
        prompts.extend(ps)
        return real(self, ps, sampling, seed, n)

    monkeypatch.setattr(TextGenerator, "generate", spy)
    ctx = _ctx(task, glue_dir, tiny_bert, tmp_path)
    t = TASKS[task]
    m = _method(tiny_gpt, tiny_bert)
    ts = m.make_set(ctx, dpc=3, seed=1, set_index=0)
    ts.validate(t)
    assert ts.class_counts(t.num_labels) == [3] * t.num_labels
    info = ts.provenance["condenselm"]
    its = info["iterations"]
    assert len(its) == 2  # ceil(3 / 2): 2 written in the first, the last 1 in the second
    assert all(it["candidates"] == 3 and 0 <= it["best"] < 3 for it in its)
    assert info["subset_per_class"] == 4 and info["m_rep_steps"] >= 1
    # step 1 (features) and step 2 (writing) prompts both carry the retrieved real examples with their labels
    feature_prompts = [p for p in prompts if "negative" in p or "entailment" in p]
    assert feature_prompts and all(t.label_names[0] in p for p in feature_prompts[:1])
    if t.is_pair:  # premises are kept from the real subset, each written with every label
        firsts = {x[0] for x in ctx.data.texts("pool")}
        assert all(row[0] in firsts for row in ts.texts)
    assert ts.provenance["cost"]["llm_calls"] > 0


def test_the_representability_model_is_trained_under_heavy_dropout(glue_dir, tiny_bert, tiny_gpt, tmp_path,
                                                                    monkeypatch):
    import dilmbench.finetune as ft

    seen = []
    real = ft.load_classifier

    def spy(model_id, num_labels, seed, device, dropout=None):
        model = real(model_id, num_labels, seed, device, dropout=dropout)
        seen.append((dropout, model.config.hidden_dropout_prob, model.config.attention_probs_dropout_prob))
        return model

    monkeypatch.setattr(ft, "load_classifier", spy)
    ctx = _ctx("sst2", glue_dir, tiny_bert, tmp_path)
    _method(tiny_gpt, tiny_bert, rep_dropout=0.3).make_set(ctx, dpc=2, seed=1, set_index=0)
    assert seen[0] == (0.3, 0.3, 0.3)  # M_rep
    assert seen[0][1] != seen[-1][1] or len(seen) == 1  # M_cov (if trained) keeps the model's own dropout


def test_a_subset_smaller_than_its_condensation_is_refused(glue_dir, tiny_bert, tiny_gpt, tmp_path):
    ctx = _ctx("sst2", glue_dir, tiny_bert, tmp_path)
    with pytest.raises(DilmbenchError, match="subset_per_class"):
        _method(tiny_gpt, tiny_bert, subset_per_class=1).make_set(ctx, dpc=2, seed=1, set_index=0)


def test_condenselm_estimates_its_reward_model_and_one_condensation_per_iteration():
    """The dry run's cost: M_rep once per task; per set, ceil(DPC / K') iterations of the writer and (from the second
    on) an M_cov fine-tune, so a DPC-20 set costs more than four DPC-5 ones; the paper's writer is known by shape."""
    from dilmbench.cost import CostContext
    from dilmbench.registry import METHODS
    from dilmbench.tasks import get_task

    cctx = CostContext(task=get_task("sst2"), pool_lengths=np.full(100, 15.0), eval_lengths=np.full(100, 15.0),
                       eval_size=872, pool_size=65_349, device="cuda", encoder="bert-base-uncased")
    m = METHODS.get("condenselm").for_preset("paper")
    s5, s20 = m.estimate_cost(cctx, 5), m.estimate_cost(cctx, 20)
    assert [s.per for s in s5] == ["task", "set"] and s5[0].flops == s20[0].flops
    assert "1 iteration" in s5[1].name and "4 iteration" in s20[1].name
    assert s20[1].flops > 4 * s5[1].flops  # three M_cov fine-tunes on top of four writer iterations
    assert s20[1].steps > 4 * s5[1].steps
    assert s5[1].peak_bytes > 28e9  # a 14.9B-parameter writer's bf16 weights
