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
