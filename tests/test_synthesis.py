"""LLM data synthesis methods end to end on tiny models (fixture data, a tiny GPT-2 as the 'LLM')."""
import pytest

from dilmbench.api import MethodContext
from dilmbench.errors import DilmbenchError
from dilmbench.registry import METHODS
from dilmbench.tasks import TASKS, load_task_data


def _ctx(task, glue_dir, tiny_bert, tmp_path):
    data = load_task_data(TASKS[task], str(glue_dir), dev_size=12)
    return MethodContext(data=data, encoder=tiny_bert, pooling="mean", device="cpu", cache_dir=tmp_path / "cache",
                         progress=False)


def _zerogen(tiny_gpt, **kw):
    return METHODS.get("zerogen")(**{"generator": tiny_gpt, "max_new_tokens": 6, "min_new_tokens": 2,
                                     "context_max_new_tokens": 3, "pool_factor": 3, "batch_size": 8, **kw})


@pytest.mark.parametrize("task", ["sst2", "mnli"])
@pytest.mark.parametrize("keep", ["kcenters", "random"])
def test_zerogen_writes_a_class_balanced_set_from_label_prompts(task, keep, glue_dir, tiny_bert, tiny_gpt, tmp_path):
    ctx = _ctx(task, glue_dir, tiny_bert, tmp_path)
    ts = _zerogen(tiny_gpt, keep=keep).make_set(ctx, dpc=2, seed=1, set_index=0)
    t = TASKS[task]
    ts.validate(t)
    assert ts.class_counts(t.num_labels) == [2] * t.num_labels
    assert all(all(x.strip() for x in row) for row in ts.texts)
    if t.is_pair:  # the first text is a real one from the pool, the second is written
        firsts = {x[0] for x in ctx.data.texts("pool")}
        assert all(row[0] in firsts for row in ts.texts)
    cost = ts.provenance["cost"]
    assert ts.provenance["source"] == "generated" and cost["llm_calls"] > 0 and cost["tokens"] > 0


def test_zerogen_prompts_follow_the_label_and_another_dpc_reuses_the_pool(glue_dir, tiny_bert, tiny_gpt, tmp_path,
                                                                          monkeypatch):
    from dilmbench.generation import TextGenerator

    seen, written = [], set()
    real = TextGenerator.generate

    def spy(self, prompts, sampling, seed, n=1):
        seen.extend(prompts)
        out = real(self, prompts, sampling, seed, n)
        written.update(t.strip() for texts in out for t in texts)
        return out

    monkeypatch.setattr(TextGenerator, "generate", spy)
    ctx = _ctx("sst2", glue_dir, tiny_bert, tmp_path)
    m = _zerogen(tiny_gpt, keep="random")
    big = m.make_set(ctx, dpc=3, seed=1, set_index=0)
    from_big_pool = set(written)
    assert any('in negative sentiment for movie "' in p for p in seen)
    assert any('in positive sentiment for movie "' in p for p in seen)
    assert seen[0] == 'Movie: "'
    # DPC 2 of the same set index asks for a prefix of the DPC-3 pool: everything comes from the cache
    small = m.make_set(ctx, dpc=2, seed=2, set_index=0)
    assert small.provenance["cost"]["llm_calls"] == 0 and small.provenance["cost"]["cached"] > 0
    assert all(row[0] in from_big_pool for row in small.texts) and big.texts


def test_zerogen_without_prompts_for_a_task_says_how_to_give_them(tiny_gpt):
    from dilmbench.tasks import Task

    t = Task(name="toxic", description="", hub_id="x", hub_config="x", revision=None, text_fields=("text",),
             label_names=("no", "yes"), train_split="train", eval_split="test")
    with pytest.raises(DilmbenchError, match="zerogen has no prompts for task 'toxic'"):
        _zerogen(tiny_gpt).prompts(t)
    with pytest.raises(DilmbenchError, match="need context 'generate' or 'pool' and 2 label prompts"):
        _zerogen(tiny_gpt, prompts={"toxic": {"context": "generate", "labels": ["a"]}}).prompts(t)


def _small(tiny_gpt, tiny_bert, name, **kw):
    return METHODS.get(name)(**{"generator": tiny_gpt, "learner": tiny_bert, "max_new_tokens": 6, "min_new_tokens": 2,
                                "context_max_new_tokens": 3, "batch_size": 8, "small_steps": 2, "keep": "random",
                                **kw})


def _spy_prompts(monkeypatch) -> list:
    """Every prompt the methods send to the generation interface, in order."""
    from dilmbench.generation import TextGenerator

    prompts = []
    real = TextGenerator.generate
    monkeypatch.setattr(TextGenerator, "generate",
                        lambda self, p, s, seed, n=1: prompts.extend(p) or real(self, p, s, seed, n))
    return prompts


class _Trap:
    """Stands in for the evaluation split: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the evaluation split was read ({name})")

    def __getitem__(self, key):
        raise AssertionError("the evaluation split was read")

    def __len__(self):
        raise AssertionError("the evaluation split was read")


@pytest.mark.parametrize("task", ["sst2", "mnli"])
def test_s3_extrapolates_a_small_models_errors_on_dev_and_never_reads_the_evaluation_split(
        task, glue_dir, tiny_bert, tiny_gpt, tmp_path, monkeypatch):
    prompts = _spy_prompts(monkeypatch)
    ctx = _ctx(task, glue_dir, tiny_bert, tmp_path)
    ctx.data.eval = _Trap()
    m = _small(tiny_gpt, tiny_bert, "s3", seed_factor=2, rounds=2, real_size=8, errors_per_round=3, per_error=1)
    ts = m.make_set(ctx, dpc=2, seed=0, set_index=0)
    t = TASKS[task]
    assert ts.class_counts(t.num_labels) == [2] * t.num_labels
    rounds = ts.provenance["s3_rounds"]
    assert rounds[0]["real_rows"] == 8 and rounds[0]["errors"] > 0  # a 2-step small model errs on real rows
    # an error is shown to the LLM as a demonstration: some prompt quotes a dev text before its query
    dev_texts = {row[-1] for row in ctx.data.texts("dev")}
    assert any(any(f'"{d}"' in p for d in dev_texts) for p in prompts if p.count('"') > 3)


def test_gold_energy_score_is_minus_t_logsumexp():
    import numpy as np

    from dilmbench.methods.gold import energy_score

    logits = np.array([[1.0, 2.0], [0.0, 0.0], [10.0, -5.0]])
    want = [-np.log(np.exp(1) + np.exp(2)), -np.log(2.0), -np.log(np.exp(10) + np.exp(-5))]
    assert energy_score(logits) == pytest.approx(want)
    want_t2 = [-2 * np.log(np.exp(0.5) + np.exp(1.0)), -2 * np.log(2.0), -2 * np.log(np.exp(5) + np.exp(-2.5))]
    assert energy_score(logits, 2.0) == pytest.approx(want_t2)
    assert energy_score(np.array([[1000.0, 999.0]]))[0] == pytest.approx(-1000 - np.log(1 + np.exp(-1)))  # no overflow


@pytest.mark.parametrize("task,loss", [("sst2", "ce"), ("mnli", "sce")])
def test_gold_feeds_out_of_distribution_samples_back_and_drops_noise(task, loss, glue_dir, tiny_bert, tiny_gpt,
                                                                     tmp_path, monkeypatch):
    prompts = _spy_prompts(monkeypatch)
    ctx = _ctx(task, glue_dir, tiny_bert, tmp_path)
    ctx.data.eval = _Trap()
    m = _small(tiny_gpt, tiny_bert, "gold", rounds=3, pool_factor=6, feedback=2, noise_share=0.25, loss=loss)
    ts = m.make_set(ctx, dpc=2, seed=0, set_index=0)
    t = TASKS[task]
    assert ts.class_counts(t.num_labels) == [2] * t.num_labels
    history = ts.provenance["gold_rounds"]
    assert [h["round"] for h in history] == [1, 2] and all(h["dropped_as_noise"] > 0 for h in history)
    # round 2's prompts carry demonstrations (the feedback); rounds 0 and 1 are zero-shot
    demo_head = m.prompts(t)["demo"][0].split("{t0}")[0]
    with_demos = [p for p in prompts if p.startswith(demo_head) and p.count('"') > 3]
    assert with_demos and all(p.count("\n\n") >= 1 for p in with_demos)


def test_gold_refuses_an_unknown_loss(glue_dir, tiny_bert, tiny_gpt, tmp_path):
    ctx = _ctx("sst2", glue_dir, tiny_bert, tmp_path)
    with pytest.raises(DilmbenchError, match="gold loss must be ce or sce"):
        _small(tiny_gpt, tiny_bert, "gold", loss="focal").make_set(ctx, dpc=2, seed=0, set_index=0)
