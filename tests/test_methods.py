import numpy as np
import pytest

from dilmbench.api import MethodContext
from dilmbench.embed import encode
from dilmbench.errors import DilmbenchError
from dilmbench.registry import METHODS
from dilmbench.tasks import TASKS, load_split, load_task_data


def _ctx(glue_dir, encoder, task="sst2", tmp=None):
    data = load_task_data(TASKS[task], str(glue_dir), dev_size=10)
    return MethodContext(data=data, encoder=encoder, pooling="mean", device="cpu", cache_dir=tmp, progress=False)


def blobs(k=5, per=40, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 20, size=(k, d))
    x = np.concatenate([c + rng.normal(0, 0.5, size=(per, d)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(k), per)


def test_random_is_balanced_and_seeded(glue_dir, tiny_bert, tmp_path):
    ctx = _ctx(glue_dir, tiny_bert, tmp=tmp_path)
    m = METHODS.get("random")()
    a = m.make_set(ctx, dpc=4, seed=1, set_index=0)
    assert a.class_counts(2) == [4, 4]
    assert a.texts == m.make_set(ctx, 4, 1, 0).texts
    assert a.texts != m.make_set(ctx, 4, 2, 0).texts
    assert a.source_indices and a.provenance["seed"] == 1


def test_kcenters_takes_one_real_point_per_cluster():
    from dilmbench.methods.kcenters import KCentersMethod

    x, blob = blobs()
    for backend in ("sklearn", "faiss", "faiss-sampled"):
        picked = KCentersMethod(backend=backend).select(x, 5, np.random.default_rng(0))
        assert sorted(blob[picked].tolist()) == [0, 1, 2, 3, 4], backend
        # each pick is the member nearest its blob's mean
        for i in picked:
            members = x[blob == blob[i]]
            assert np.argmin(((members - members.mean(0)) ** 2).sum(1)) == np.flatnonzero(blob == blob[i]).tolist().index(i)


def test_nearest_by_distance_takes_each_clusters_closest_member_first_on_ties():
    from dilmbench.cluster import nearest_by_distance

    assign = np.array([1, 0, 1, 0, 2, 1, 2])
    dist = np.array([0.5, 0.3, 0.2, 0.3, 0.9, 0.2, 1.0])
    assert nearest_by_distance(assign, dist, 3).tolist() == [1, 2, 4]
    with pytest.raises(DilmbenchError, match="empty cluster"):
        nearest_by_distance(assign, dist, 4)


# k-means on structureless data: sklearn's clusters there change with the number of OpenMP threads it sums over
_THREADS_PROBE = """
import numpy as np
from threadpoolctl import threadpool_limits
from dilmbench.cluster import kmeans_labels
x = np.random.default_rng(0).standard_normal((20000, 16)).astype(np.float32)
first = [kmeans_labels(x, 8, seed)[0] for seed in range(5)]  # the process's first k-means calls
with threadpool_limits(1):
    one = [kmeans_labels(x, 8, seed)[0] for seed in range(5)]
with threadpool_limits(2):
    two = [kmeans_labels(x, 8, seed)[0] for seed in range(5)]
print(sum(int((a != b).sum()) for a, b in zip(first, one)), sum(int((a != b).sum()) for a, b in zip(two, one)))
"""


def test_k_means_clusters_do_not_depend_on_the_thread_count():
    # a k-centers set's identity holds its seed, not the machine's threads: a fresh process with 2 OpenMP threads
    # (its first calls too, before sklearn is loaded) must cluster as one limited to 1 thread. (sklearn only: faiss
    # clustered these points alike on 1 and 2 threads before it was limited too, so a faiss case could not fail here)
    import os
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _THREADS_PROBE], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "2"}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["0", "0"], f"points clustered differently (first calls, 2 threads): {out.stdout}"


def test_kcenter_greedy_covers_every_blob_and_beats_random_radius():
    from dilmbench.methods.kcenter_greedy import farthest_first

    x, blob = blobs(seed=1)
    picked = farthest_first(x, 5, first=0)
    assert sorted(blob[picked].tolist()) == [0, 1, 2, 3, 4]

    def radius(idx):
        return np.sqrt(((x[:, None] - x[idx][None]) ** 2).sum(-1)).min(1).max()

    rng = np.random.default_rng(0)
    random_radii = [radius(rng.choice(len(x), 5, replace=False)) for _ in range(50)]
    assert radius(picked) <= np.median(random_radii)


def test_herding_is_argmin_deterministic_and_beats_random_on_real_embeddings(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    from dilmbench.methods.herding import herding

    task = TASKS["sst2"]
    train = load_split(task, "train", "embedded").select(range(600))
    neg = [(s,) for s, y in zip(train["sentence"], train["label"]) if y == 0]
    model, tok = AutoModel.from_pretrained(tiny_bert), AutoTokenizer.from_pretrained(tiny_bert)
    emb = encode(neg, model, tok, pooling="mean")
    mu = emb.mean(0)
    k = 10
    picked = herding(emb, k)
    assert (picked == herding(emb, k)).all() and len(set(picked.tolist())) == k
    gap = np.linalg.norm(emb[picked].mean(0) - mu)
    rng = np.random.default_rng(0)
    random_gaps = np.array([np.linalg.norm(emb[rng.choice(len(emb), k, replace=False)].mean(0) - mu) for _ in range(200)])
    assert (random_gaps > gap).mean() >= 0.95
    assert gap < 0.5 * np.median(random_gaps)
    # the argmax variant (DeepCore's bug) moves the mean away instead
    farthest = np.argsort(-(emb @ mu))[:k]
    assert gap < np.linalg.norm(emb[farthest].mean(0) - mu)


def test_selection_methods_on_a_pair_task(glue_dir, tiny_bert, tmp_path):
    ctx = _ctx(glue_dir, tiny_bert, task="mnli", tmp=tmp_path)
    for name in ("kcenters", "kcenter_greedy", "herding"):
        ts = METHODS.get(name)().make_set(ctx, dpc=3, seed=5, set_index=0)
        assert ts.class_counts(3) == [3, 3, 3] and all(len(t) == 2 for t in ts.texts)
        assert ts.provenance["config"]["encoder"] == tiny_bert
        ts.validate(TASKS["mnli"])


def test_pool_embeddings_are_cached_on_disk(glue_dir, tiny_bert, tmp_path, monkeypatch):
    ctx = _ctx(glue_dir, tiny_bert, tmp=tmp_path)
    first = ctx.pool_embeddings()
    files = list((tmp_path / "embeddings").glob("*.npy"))
    assert len(files) == 1
    ctx2 = _ctx(glue_dir, tiny_bert, tmp=tmp_path)

    def no_model(*a, **k):
        raise AssertionError("the cached embeddings should have been read, not recomputed")

    monkeypatch.setattr("dilmbench.models.load_pretrained", no_model)
    assert np.array_equal(ctx2.pool_embeddings(), first)


def test_bf16_embeddings_are_close_cached_apart_and_in_the_sets_identity(glue_dir, tiny_bert, tmp_path):
    """embed_dtype bfloat16: the pass under bf16 autocast gives embeddings close to float32's (cosine > 0.99 per row)
    but not equal, cached under a key of their own; a set made from them says so in its identity and provenance,
    while a float32 set's identity is what it was before the option existed (no dtype key)."""
    from dilmbench.config import build_config
    from dilmbench.runner import Runner

    data = load_task_data(TASKS["sst2"], str(glue_dir), dev_size=10)
    ctxs = {d: MethodContext(data=data, encoder=tiny_bert, pooling="mean", device="cpu", cache_dir=tmp_path,
                             progress=False, embed_dtype=d) for d in ("float32", "bfloat16")}
    e32, e16 = ctxs["float32"].pool_embeddings(), ctxs["bfloat16"].pool_embeddings()
    assert e16.dtype == np.float32 and e16.shape == e32.shape and not np.array_equal(e16, e32)
    cos = (e16 * e32).sum(1) / np.linalg.norm(e16, axis=1) / np.linalg.norm(e32, axis=1)
    assert cos.min() > 0.99
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 2
    ts = METHODS.get("herding")().make_set(ctxs["bfloat16"], dpc=2, seed=0, set_index=0)
    assert ts.provenance["config"]["dtype"] == "bfloat16"
    assert "dtype" not in METHODS.get("herding")().make_set(ctxs["float32"], dpc=2, seed=0, set_index=0).provenance["config"]

    def ident(dtype):
        cfg = build_config("quick", overrides={"tasks": ["sst2"], "methods": ["herding"], "encoder": tiny_bert,
                                               "data_source": str(glue_dir), "dev_size": 10, "embed_dtype": dtype})
        runner = Runner(cfg, tmp_path / "out", progress=False)
        runner.build()
        return runner.set_identity(data, runner.specs[0], 2, 0)

    assert ident("float32")["encoder"] == {"model": tiny_bert, "pooling": "mean"}
    assert ident("bfloat16")["encoder"] == {"model": tiny_bert, "pooling": "mean", "dtype": "bfloat16"}
    assert build_config("quick")["embed_dtype"] == "bfloat16" and build_config("paper")["embed_dtype"] == "float32"
    with pytest.raises(DilmbenchError, match="embed_dtype must be 'float32' or 'bfloat16', got 'float16'"):
        build_config("quick", overrides={"embed_dtype": "float16"})


def test_sorted_dynamic_padding_gives_the_same_embeddings(tiny_bert):
    from transformers import AutoModel, AutoTokenizer

    texts = [("good",), ("the movie was a boring and dull story with a weak cast",), ("fine fun",)]
    model, tok = AutoModel.from_pretrained(tiny_bert), AutoTokenizer.from_pretrained(tiny_bert)
    for pooling in ("cls", "mean"):
        fast = encode(texts, model, tok, pooling=pooling, batch_size=2)
        slow = encode(texts, model, tok, pooling=pooling, batch_size=2, sort_by_length=False, pad_to_longest_text=True)
        np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_dpc_larger_than_class_is_an_error(glue_dir, tiny_bert, tmp_path):
    ctx = _ctx(glue_dir, tiny_bert, tmp=tmp_path)
    with pytest.raises(DilmbenchError, match="DPC 500 is larger than class"):
        METHODS.get("random")().make_set(ctx, dpc=500, seed=0, set_index=0)


def test_cls_pooling_follows_the_models_own_rule(tiny_bert):
    """A left-padded tokenizer whose CLS token ends the text (XLNet's layout): CLS pooling reads the CLS position,
    not position 0 (padding)."""
    import torch

    from dilmbench.embed import cls_positions, pool_hidden

    ids = torch.tensor([[0, 0, 7, 8, 3], [5, 6, 7, 8, 3]])  # 3 = CLS at the end, 0 = left padding
    mask = (ids != 0).long()
    assert cls_positions(ids, mask, 3).tolist() == [4, 4]
    hidden = torch.arange(2 * 5 * 2, dtype=torch.float).reshape(2, 5, 2)
    assert torch.equal(pool_hidden(hidden, mask, "cls", ids, 3), hidden[:, 4])
    bert_ids = torch.tensor([[2, 7, 8, 0], [2, 7, 0, 0]])  # BERT: [CLS] first, right padding
    assert cls_positions(bert_ids, (bert_ids != 0).long(), 2).tolist() == [0, 0]
    assert cls_positions(ids, mask, None).tolist() == [2, 0]  # no CLS token: the first real token


def test_segment_ids_are_asked_for_where_the_model_takes_them(tiny_bert, tiny_roberta, tiny_xlnet):
    from transformers import AutoTokenizer

    from dilmbench.batching import tokenize

    pair = [("good fun", "dull")]
    bert = tokenize(AutoTokenizer.from_pretrained(tiny_bert), pair, 32)[0]
    assert bert["token_type_ids"].count(1) == 2  # the second text's token and its [SEP]
    xlnet_tok = AutoTokenizer.from_pretrained(tiny_xlnet)
    # (transformers 5's XLNet tokenizer no longer returns them unless asked; 4.x's did)
    xlnet = tokenize(xlnet_tok, pair, 32)[0]
    assert set(xlnet["token_type_ids"]) == {0, 1, 2} and xlnet["token_type_ids"][-1] == 2  # <cls> has its own type
    assert "token_type_ids" not in tokenize(AutoTokenizer.from_pretrained(tiny_roberta), pair, 32)[0]


@pytest.mark.parametrize("fixture", ["tiny_roberta", "tiny_xlnet"])
@pytest.mark.parametrize("task", ["sst2", "mnli"])
def test_paper_learner_families_fine_tune_and_embed(fixture, task, request, glue_dir, tmp_path):
    """Byte-level BPE (RoBERTa) and SentencePiece with left padding and a final <cls> (XLNet), single texts and pairs:
    the evaluator runs end to end and CLS pooling reads each model's own classification position."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from dilmbench.api import EvalContext
    from dilmbench.embed import encode
    from dilmbench.registry import EVALUATORS
    from dilmbench.tasks import TASKS, load_task_data
    from dilmbench.textset import TextSet

    model_dir = request.getfixturevalue(fixture)
    data = load_task_data(TASKS[task], str(glue_dir), dev_size=10)
    ctx = EvalContext(data=data, device="cpu", cache_dir=tmp_path, progress=False)
    ts = TextSet(task=task, text_fields=TASKS[task].text_fields, texts=data.texts("pool")[:12],
                 labels=data.labels("pool")[:12])
    res = EVALUATORS.get("finetune")(learners=[model_dir], steps=3).evaluate(ctx, ts, model_dir, seed=0)
    assert res["eval_examples"] == len(data.labels("eval")) and 0 <= res["score"] <= 1
    tok, model = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    texts = [("good",), ("the movie was a boring and dull story",)]
    batched = encode(texts, model, tok, pooling="cls", batch_size=2)
    with torch.no_grad():  # each text alone (no padding): the CLS token's hidden state
        for i, t in enumerate(texts):
            enc = tok(t[0], return_tensors="pt")
            hidden = model(**enc).last_hidden_state[0]
            pos = enc["input_ids"][0].tolist().index(tok.cls_token_id)
            np.testing.assert_allclose(batched[i], hidden[pos].numpy(), atol=1e-4)
