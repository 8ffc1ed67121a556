"""The core's generation interface on a tiny GPT-2: transformers' own greedy decoding, per-sample seeds, stop strings,
the on-disk cache and the cost it records."""
import pytest
import torch

from dilmbench.errors import DilmbenchError
from dilmbench.generation import Sampling, TextGenerator, causal_lm

PROMPTS = ["great film", "a dull and boring plot with", "the"]


def test_greedy_decoding_matches_transformers_generate(tiny_gpt, tmp_path):
    gen = TextGenerator(tiny_gpt, cache_dir=None, batch_size=3)
    got = gen.generate(PROMPTS, Sampling(max_new_tokens=6, temperature=0), seed=0)
    model, tok = causal_lm(tiny_gpt, "cpu")
    for prompt, [text] in zip(PROMPTS, got):
        ids = torch.tensor([tok(prompt)["input_ids"]])
        ref = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6,
                             pad_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
        want = tok.decode([t for t in ref[0, ids.shape[1]:].tolist() if t != tok.eos_token_id],
                          skip_special_tokens=True)
        assert text == want
    assert gen.cost["llm_calls"] == 3 and gen.cost["tokens"] > 0


def test_a_sample_depends_on_its_prompt_seed_and_index_not_on_its_batch(tiny_gpt):
    s = Sampling(max_new_tokens=8, top_p=0.9)
    together = TextGenerator(tiny_gpt, batch_size=3).generate(PROMPTS, s, seed=5, n=3)
    alone = TextGenerator(tiny_gpt, batch_size=1).generate(PROMPTS[1:2], s, seed=5, n=2)
    assert alone[0] == together[1][:2]
    assert len(set(together[1])) > 1  # sample k has a stream of its own
    assert TextGenerator(tiny_gpt).generate(PROMPTS[1:2], s, seed=6, n=2)[0] != alone[0]


def test_stop_strings_end_the_text_before_them(tiny_gpt):
    s = Sampling(max_new_tokens=12, temperature=0)
    free = TextGenerator(tiny_gpt).generate(["great film"], s, seed=0)[0][0]
    words = free.split()
    assert len(words) >= 3
    stopped = TextGenerator(tiny_gpt).generate(["great film"], Sampling(12, temperature=0, stop=(words[2],)), seed=0)
    assert stopped[0][0] == free[: free.index(words[2])]


def test_generated_texts_are_cached_by_model_prompt_sampling_seed_and_index(tiny_gpt, tmp_path, monkeypatch):
    s = Sampling(max_new_tokens=6, top_p=0.95)
    first = TextGenerator(tiny_gpt, cache_dir=tmp_path)
    a = first.generate(PROMPTS, s, seed=1, n=2)
    assert first.cost["llm_calls"] == 6 and first.cost["cached"] == 0
    again = TextGenerator(tiny_gpt, cache_dir=tmp_path)
    monkeypatch.setattr(again, "_transformers", lambda *a, **k: pytest.fail("a cached text was generated again"))
    assert again.generate(PROMPTS, s, seed=1, n=2) == a
    assert again.cost == {"llm_calls": 0, "cached": 6, "tokens": 0, "seconds": 0.0}
    monkeypatch.undo()
    more = TextGenerator(tiny_gpt, cache_dir=tmp_path)  # another DPC asks for a third sample: only that is made
    b = more.generate(PROMPTS, s, seed=1, n=3)
    assert [x[:2] for x in b] == a and more.cost["llm_calls"] == 3 and more.cost["cached"] == 6
    other = TextGenerator(tiny_gpt, cache_dir=tmp_path)  # other sampling parameters are other texts
    other.generate(PROMPTS, Sampling(max_new_tokens=6, top_p=0.5), seed=1, n=1)
    assert other.cost["llm_calls"] == 3
    # another backend draws other texts from the same seeds: it never reads the transformers backend's cache
    vllm = TextGenerator(tiny_gpt, cache_dir=tmp_path, backend="vllm")
    monkeypatch.setattr(vllm, "_vllm", lambda prompts, seeds, s: [("from vllm", 2)] * len(prompts))
    assert vllm.generate(PROMPTS, s, seed=1, n=2) == [["from vllm"] * 2] * len(PROMPTS)
    assert vllm.cost["llm_calls"] == 6 and vllm.cost["cached"] == 0


@pytest.mark.parametrize("kw", [{"max_new_tokens": 0}, {"top_p": 0.0}, {"temperature": -1.0}, {"top_k": -2}])
def test_bad_sampling_parameters_are_refused(kw):
    with pytest.raises(DilmbenchError):
        Sampling(**kw)


def test_unknown_backend_is_refused(tiny_gpt):
    with pytest.raises(DilmbenchError, match="generation backend must be"):
        TextGenerator(tiny_gpt, backend="llama.cpp")
