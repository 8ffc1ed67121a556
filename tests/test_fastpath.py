"""The fine-tuning fast path against the reference path, on tiny models built from configs.

Tolerances: in float32 (``dtype=torch.float32``, dropout off) the fast path is the reference path's math with other
reduction orders (one backward over the micro-batches' summed loss): per-step losses within 1e-5 (relative) and final
parameters within 2e-5 (absolute: a 250th of one AdamW step at the tests' lr 5e-3; Adam's m / sqrt(v) turns
rounding in a near-zero gradient into a visible part of a step). In bfloat16 it
computes differently by design (bf16 weights and activations, float32 masters): per-step losses within 0.05 of the
float32 reference path's (0.05: what bf16 rounding alone gives on this fixture, the reference path's own bf16 autocast
included), the same predictions on the fixture."""
import numpy as np
import pytest
import torch

from dilmbench.fastpath import CompactEmbedding, DropoutStream, StreamDropout, train_classifier_fast, use_stream_dropout
from dilmbench.finetune import FinetuneRecipe, load_classifier, logits_of, train_classifier
from dilmbench.models import load_tokenizer

TEXTS = [("good fun movie",), ("bad dull plot",), ("great cast and a lovely story",), ("awful",),
         ("the film was brilliant and warm",), ("tedious and flat",), ("charming",), ("ugly messy boring film",)]
LABELS = [1, 0, 1, 0, 1, 0, 1, 0]


def no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(getattr(m, "dropout_prob", None), float):  # attention inside torch's sdpa (older BERT)
            m.dropout_prob = 0.0
    return model


@pytest.mark.parametrize("micro", [0, 24])
@pytest.mark.parametrize("learner", ["tiny_bert", "tiny_roberta", "tiny_xlnet", "tiny_gpt", "tiny_llama"])
def test_float32_fast_path_is_the_reference_math(learner, micro, request):
    path = request.getfixturevalue(learner)
    tok = load_tokenizer(path)
    if tok.pad_token is None:  # the decoder (GPT-2 pads with its end-of-text token, as load_classifier's model does)
        tok.pad_token = tok.eos_token
    recipe = FinetuneRecipe(steps=12, lr=5e-3, micro_batch_tokens=micro, max_batch_size=6)
    ref = no_dropout(load_classifier(path, 2, 3, "cpu"))
    fast = no_dropout(load_classifier(path, 2, 3, "cpu"))
    ref_losses = train_classifier(ref, tok, TEXTS, LABELS, recipe, 3, "cpu")
    fast_losses = train_classifier_fast(fast, tok, TEXTS, LABELS, recipe, 3, "cpu", dtype=torch.float32)
    np.testing.assert_allclose(fast_losses, ref_losses, rtol=1e-5, atol=1e-6)
    ref_params, fast_params = dict(ref.named_parameters()), dict(fast.named_parameters())
    assert ref_params.keys() == fast_params.keys()
    for name, p in ref_params.items():
        q = fast_params[name]
        assert q.shape == p.shape and q.dtype == torch.float32, name
        torch.testing.assert_close(q, p, rtol=1e-5, atol=2e-5, msg=lambda m: f"{name}: {m}")
    emb = fast.get_input_embeddings()
    assert emb.num_embeddings == emb.weight.shape[0] == ref.get_input_embeddings().num_embeddings
    assert all(p.grad is None for p in fast.parameters())


def test_bf16_fast_path_stays_close_to_the_float32_reference(tiny_bert):
    tok = load_tokenizer(tiny_bert)
    ref = no_dropout(load_classifier(tiny_bert, 2, 0, "cpu"))
    fast = no_dropout(load_classifier(tiny_bert, 2, 0, "cpu"))
    ref_losses = train_classifier(ref, tok, TEXTS, LABELS, FinetuneRecipe(steps=20, lr=5e-3), 0, "cpu")
    fast_losses = train_classifier_fast(fast, tok, TEXTS, LABELS, FinetuneRecipe(steps=20, lr=5e-3), 0, "cpu")
    # (on this fixture the reference path's own bf16 autocast strays 0.047 from float32 at seed 0; the fast path,
    # seeds 0-3: 0.020 / 0.037 / 0.047 / 0.007 on packed rows, 0.008 / 0.035 / 0.065 / 0.017 on padded batches)
    assert max(abs(a - b) for a, b in zip(ref_losses, fast_losses)) < 0.05
    assert fast_losses[-1] < 0.8 * fast_losses[0]  # it learns the fixture
    recipe = FinetuneRecipe()
    a, b = logits_of(ref, tok, TEXTS, recipe, "cpu"), logits_of(fast, tok, TEXTS, recipe, "cpu")
    assert (a.argmax(1) == b.argmax(1)).all()
    assert next(fast.parameters()).dtype == torch.float32  # it leaves the model in float32, like the reference


def test_unused_embedding_rows_get_only_the_decay(tiny_bert):
    tok = load_tokenizer(tiny_bert)
    model = load_classifier(tiny_bert, 2, 0, "cpu")
    before = model.get_input_embeddings().weight.detach().clone()
    recipe = FinetuneRecipe(steps=10, lr=1e-2, weight_decay=0.5)
    train_classifier_fast(model, tok, TEXTS[:2], LABELS[:2], recipe, 0, "cpu")
    after = model.get_input_embeddings().weight.detach()
    used = set(tok("good fun movie")["input_ids"] + tok("bad dull plot")["input_ids"] + [tok.pad_token_id])
    unused = [i for i in range(len(before)) if i not in used]
    # the recipe's lr schedule by hand: linear warmup over 5 steps from 0, then cosine down
    lrs = [1e-2 * s / 5 if s < 5 else 1e-2 * 0.5 * (1 + np.cos(np.pi * (s - 5) / 5)) for s in range(10)]
    decay = np.prod([1 - lr * 0.5 for lr in lrs])
    assert decay < 0.98  # big enough to be seen
    torch.testing.assert_close(after[unused], before[unused] * decay, rtol=1e-6, atol=1e-7)
    trained = sorted(used - {tok.pad_token_id})
    assert not torch.allclose(after[trained], before[trained] * decay, atol=1e-4)  # the used rows were trained


def test_compact_embedding_sees_vocabulary_ids(tiny_roberta):
    """RoBERTa reads the ids (its positions count non-pad tokens): the compact table must not change what it sees."""
    tok = load_tokenizer(tiny_roberta)
    model = load_classifier(tiny_roberta, 2, 0, "cpu").eval()
    batch = tok(["good fun", "a lovely story with a charming cast"], padding=True, return_tensors="pt")
    with torch.no_grad():
        want = model(**batch).logits
        compact = CompactEmbedding(model, batch["input_ids"].unique())
        assert compact.active and model.get_input_embeddings().weight.shape[0] < len(tok)
        got = model(**batch).logits
        compact.restore(1.0)
        again = model(**batch).logits
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(again, want)


def test_stream_dropout_masks_are_the_runs_own():
    x = torch.ones(64, 128, dtype=torch.bfloat16, requires_grad=True)
    a = DropoutStream(7).dropout(x, 0.1)
    b = DropoutStream(7).dropout(x, 0.1)
    c = DropoutStream(8).dropout(x, 0.1)
    assert torch.equal(a, b) and not torch.equal(a, c)
    kept = (a != 0).float().mean().item()
    assert 0.88 < kept < 0.92
    assert torch.equal(a[a != 0].float(), torch.full_like(a[a != 0].float(), float(torch.tensor(1 / 0.9).bfloat16())))
    a.float().sum().backward()  # the backward uses the forward's mask and scale
    assert torch.equal((x.grad != 0), (a != 0))
    # float32 activations get a float32 mask with the exact scale
    y = DropoutStream(1).dropout(torch.ones(1000), 0.5)
    assert set(y.unique().tolist()) == {0.0, 2.0}


def test_every_dropout_site_draws_from_the_stream(tiny_bert, tiny_xlnet):
    for path in (tiny_bert, tiny_xlnet):
        model = load_classifier(path, 2, 0, "cpu")
        n_dropout = sum(type(m) is torch.nn.Dropout for m in model.modules())
        done = use_stream_dropout(model, DropoutStream(0))
        assert done["dropout_modules"] == n_dropout > 0
        assert not any(type(m) is torch.nn.Dropout for m in model.modules())
        assert all(m.stream is not None for m in model.modules() if isinstance(m, StreamDropout))
    assert done["attention_dropout_from_stream"] is False  # XLNet's attention has its own dropout module (swapped)
    assert done["attention_dropout_from_torch"] is False
    bert = load_classifier(tiny_bert, 2, 0, "cpu")
    said = use_stream_dropout(bert, DropoutStream(0))
    # where transformers routes BERT's attention through its interface, the stream draws that dropout too; where it
    # does not (older releases), torch's generator does, and it is said
    assert said["attention_dropout_from_stream"] != said["attention_dropout_from_torch"]


def test_fast_runs_are_seeded_and_dropout_is_on(tiny_bert):
    tok = load_tokenizer(tiny_bert)
    recipe = FinetuneRecipe(steps=6, lr=1e-3, fast=True)

    def run(seed):
        model = load_classifier(tiny_bert, 2, 0, "cpu")
        return train_classifier(model, tok, TEXTS, LABELS, recipe, seed, "cpu")

    assert run(1) == run(1)
    assert run(1) != run(2)
    model = no_dropout(load_classifier(tiny_bert, 2, 0, "cpu"))
    assert train_classifier(model, tok, TEXTS, LABELS, recipe, 1, "cpu") != run(1)  # dropout changes the losses


def test_results_made_before_the_fast_path_keep_their_identity(glue_dir, tiny_bert, tmp_path):
    from dilmbench.config import build_config
    from dilmbench.errors import DilmbenchError
    from dilmbench.registry import EVALUATORS
    from dilmbench.runner import Runner, read_result

    assert "fast" not in EVALUATORS.get("finetune")(learners=[tiny_bert]).identity()["config"]
    assert EVALUATORS.get("finetune").for_preset("quick").identity()["config"]["fast"] is True

    def cfg(fast):
        return build_config("quick", overrides={
            "tasks": ["sst2"], "methods": ["random"], "dpc": [2], "sets": 1, "inits": 1, "encoder": tiny_bert,
            "data_source": str(glue_dir), "dev_size": 10,
            "evaluator_options": {"finetune": {"learners": [tiny_bert], "steps": 3, "fast": fast}}})

    out = tmp_path / "out"
    assert Runner(cfg(False), out, progress=False).run()["done"] == 1  # the reference path, as results were made
    made = next((out / "runs").rglob("*.json"))
    assert "fast" not in read_result(made)["config"]["evaluator_config"]
    assert Runner(cfg(False), out, progress=False).run()["skipped"] == 1  # still found as done
    with pytest.raises(DilmbenchError, match="another configuration"):  # the fast path is another configuration
        Runner(cfg(True), out, progress=False).run()
    assert Runner(cfg(True), tmp_path / "fast", progress=False).run()["done"] == 1
    fast = read_result(next((tmp_path / "fast" / "runs").rglob("*.json")))
    assert fast["config"]["evaluator_config"]["fast"] is True and fast["config_hash"] != read_result(made)["config_hash"]


def test_flat_compiled_adamw_is_torchs_adamw(tiny_bert):
    """The flat way (one compiled pass over flat buffers) against torch's fused AdamW per tensor, fed the same bf16
    gradients: float32 masters within float32 rounding (1e-6 relative) after every step, clipped at the same global
    norm; a parameter the loss did not reach is left alone (not even decayed), as torch's AdamW leaves it."""
    from dilmbench.fastpath import MasterAdamW, compiled_flat_kernels

    if compiled_flat_kernels() is None:
        pytest.skip("torch.compile cannot build kernels on this machine: the per-tensor way is used")
    recipe = FinetuneRecipe(steps=6, lr=5e-3, max_grad_norm=0.5)
    models = [load_classifier(tiny_bert, 2, 0, "cpu") for _ in range(2)]
    flat, ref = (MasterAdamW(m, recipe, 6, embedding=None, flat=f) for m, f in zip(models, (True, False)))
    assert flat.flat and not ref.flat
    gen = torch.Generator().manual_seed(0)
    skipped = 3  # this parameter gets no gradient
    for _ in range(6):
        flat.zero_grad()
        ref.zero_grad()
        for i, (p, q) in enumerate(zip(flat.params, ref.params)):
            if i != skipped:
                g = torch.randn(p.shape, generator=gen).bfloat16()
                p.grad, q.grad = g.clone(), g.clone()
        before = flat.master[skipped].clone()
        flat.step()
        ref.step()
        for a, b in zip(flat.master, ref.master):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        for opt in (flat, ref):  # the model's bf16 weights: its masters rounded
            for p, m in zip(opt.params, opt.master):
                assert p.dtype == torch.bfloat16 and torch.equal(p.detach(), m.bfloat16())
        assert torch.equal(flat.master[skipped], before)
    assert flat.lrs == ref.lrs
    for model, opt in zip(models, (flat, ref)):
        opt.finish(model)
    for (n, p), q in zip(models[0].named_parameters(), models[1].parameters()):
        assert p.dtype == torch.float32 and p.grad is None
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=lambda m: f"{n}: {m}")


def test_fast_path_results_carry_its_version(tiny_bert, tiny_gpt, tiny_llama):
    """A run's identity carries the fast path's version as it concerns its learner: the decoders' (changed by
    version 3) from version 3 on; an encoder's, unchanged since version 2, as before (its finished runs stay valid)."""
    from dilmbench.fastpath import VERSION
    from dilmbench.recipe import fast_path_version
    from dilmbench.registry import EVALUATORS

    assert VERSION == 3
    quick = EVALUATORS.get("finetune").for_preset("quick")
    assert quick.learner_identity(tiny_gpt) == quick.learner_identity(tiny_llama) == {"fast_path": 3}
    assert quick.learner_identity(tiny_bert) == {} and fast_path_version(tiny_bert) == 2
    assert quick.learner_identity("sentence-transformers/all-MiniLM-L6-v2") == {}  # (read from the configs known)
    assert EVALUATORS.get("finetune")(learners=[tiny_gpt]).learner_identity(tiny_gpt) == {}  # reference path


def test_a_decoders_version_2_result_is_not_taken_as_done(glue_dir, tiny_gpt, tmp_path, monkeypatch):
    """Through the runner: a fast-path decoder run recorded as version 2 had it (no version in its identity) is
    another configuration for today's fast path; its record carries the version."""
    from dilmbench.config import build_config
    from dilmbench.errors import DilmbenchError
    from dilmbench.registry import EVALUATORS
    from dilmbench.runner import Runner, read_result

    cfg = build_config("quick", overrides={
        "tasks": ["sst2"], "methods": ["random"], "dpc": [2], "sets": 1, "inits": 1, "encoder": tiny_gpt,
        "data_source": str(glue_dir), "dev_size": 10,
        "evaluator_options": {"finetune": {"learners": [tiny_gpt], "steps": 2}}})
    evaluator = EVALUATORS.get("finetune")
    with monkeypatch.context() as m:
        m.setattr(evaluator, "learner_identity", lambda self, learner: {})  # as version 2 planned it
        assert Runner(cfg, tmp_path / "out", progress=False).run()["done"] == 1
    with pytest.raises(DilmbenchError, match="another configuration"):
        Runner(cfg, tmp_path / "out", progress=False).run()
    assert Runner(cfg, tmp_path / "new", progress=False).run()["done"] == 1
    rec = read_result(next((tmp_path / "new" / "runs").rglob("*.json")))
    assert rec["config"]["learner_identity"] == {"fast_path": 3}


def test_training_attention_stays_causal_without_padding(tiny_gpt):
    """A decoder with attention dropout (GPT-2) on the fast path, a batch with no padding (transformers leaves the
    causal mask to sdpa's is_causal then): the hidden states of the first tokens do not depend on a later token.
    Version 2 let them (its dropout branch applied no causal mask when the mask was left out)."""
    import numpy as np

    model = load_classifier(tiny_gpt, 2, 0, "cpu")
    stream = DropoutStream(0)
    assert use_stream_dropout(model, stream)["attention_dropout_from_stream"]
    model.train()
    tok = load_tokenizer(tiny_gpt)
    first = []
    for last in ("good", "awful"):
        ids = torch.as_tensor([tok("the movie was " + last)["input_ids"]])
        stream.bitgen = np.random.SFC64(0)  # the same dropout masks for both
        with torch.no_grad():
            first.append(model.transformer(input_ids=ids).last_hidden_state[0, :-1])
    torch.testing.assert_close(first[0], first[1], rtol=0, atol=0)


@pytest.mark.parametrize("row_tokens", [10, 128])
@pytest.mark.parametrize("learner", ["tiny_bert", "tiny_llama", "tiny_gemma"])
def test_packed_rows_are_the_padded_math(learner, row_tokens, monkeypatch, request):
    """A BERT learner or a decoder trains on packed rows (texts end to end, attention within each text and causal in
    a decoder, each text's own positions, the head on each text's first token, a decoder's on its last): in float32
    without dropout, per-step losses within 1e-5 and final parameters within 2e-5 of padded micro-batches; texts split
    over several rows, and rows over several forwards. With dropout on (bf16, other masks) it learns as the padded
    path does."""
    from dilmbench import fastpath
    from dilmbench.fastpath import Packer
    from dilmbench.finetune import learner_tokenizer

    if learner == "tiny_gemma":
        import transformers

        if not hasattr(transformers, "Gemma3TextForSequenceClassification"):
            pytest.skip("this transformers has no Gemma-3 sequence classifier (4.56 has none): no Gemma-3 learner")
    tiny_bert = request.getfixturevalue(learner)
    monkeypatch.setattr(fastpath, "PACK_ROW_TOKENS", row_tokens)  # 10: several rows a forward, padded to the longest
    forwards = []
    real_forward = Packer.forward
    monkeypatch.setattr(Packer, "forward", lambda self, m, st, rows: forwards.append(len(rows)) or real_forward(
        self, m, st, rows))
    tok = learner_tokenizer(tiny_bert)
    if not Packer.fits(load_classifier(tiny_bert, 2, 3, "cpu")):
        pytest.skip("this transformers' model does not route attention through AttentionInterface: no packing there")
    assert Packer.kind_of(load_classifier(tiny_bert, 2, 3, "cpu")) == ("bert" if learner == "tiny_bert" else "decoder")
    for micro in (12, 40):
        recipe = FinetuneRecipe(steps=12, lr=5e-3, micro_batch_tokens=micro, max_batch_size=6)
        padded = no_dropout(load_classifier(tiny_bert, 2, 3, "cpu"))
        packed = no_dropout(load_classifier(tiny_bert, 2, 3, "cpu"))
        a = train_classifier_fast(padded, tok, TEXTS, LABELS, recipe, 3, "cpu", dtype=torch.float32, pack=False)
        forwards.clear()
        b = train_classifier_fast(packed, tok, TEXTS, LABELS, recipe, 3, "cpu", dtype=torch.float32, pack=True)
        assert forwards  # it packed
        if micro == 40 and row_tokens == 10:
            assert max(forwards) > 1  # several rows a forward
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        for (name, p), q in zip(padded.named_parameters(), packed.parameters()):
            torch.testing.assert_close(q, p, rtol=1e-5, atol=2e-5, msg=lambda m: f"{name}: {m}")
    model = load_classifier(tiny_bert, 2, 0, "cpu")
    other = load_classifier(tiny_bert, 2, 0, "cpu")
    losses = train_classifier_fast(model, tok, TEXTS, LABELS, FinetuneRecipe(steps=40, lr=5e-3), 0, "cpu")
    padded = train_classifier_fast(other, tok, TEXTS, LABELS, FinetuneRecipe(steps=40, lr=5e-3), 0, "cpu", pack=False)
    # (measured: the last ten steps' mean loss 0.50 packed, 0.50 padded, from 0.69)
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:5])
    assert abs(np.mean(losses[-10:]) - np.mean(padded[-10:])) < 0.08
    # the eval pass after training reads padded batches with the model's own attention: no packing left behind
    recipe = FinetuneRecipe()
    assert logits_of(model, tok, TEXTS, recipe, "cpu").shape == (len(TEXTS), 2)


def test_packer_rows_respect_the_token_budget():
    from dilmbench.fastpath import Packer

    class P:  # a Padder's lengths
        lengths = np.array([5, 9, 3, 7, 2])

    packer = Packer(P, 12, 24, "cpu")
    rows = packer.rows(np.arange(5))
    assert sorted(np.concatenate(rows).tolist()) == [0, 1, 2, 3, 4]
    assert all(P.lengths[r].sum() <= 12 or len(r) == 1 for r in rows)
    assert [r.tolist() for r in rows] == [[1], [3, 0], [2, 4]]
    assert [r.tolist() for r in Packer(P, 3, 24, "cpu").rows(np.arange(5))][0] == [1]  # a longer text rides alone
    # forwards of at most 24 padded tokens: rows of 9, 12, 5 tokens -> [9, 12] would pad to 2 x 12 = 24, then [5]
    assert [[r.tolist() for r in b] for b in packer.batches(np.arange(5))] == [[[1], [3, 0]], [[2, 4]]]


def test_version_2_can_be_pinned_for_a_folder_made_at_it(tiny_llama, monkeypatch):
    """fast_version 2 runs a decoder as version 2 did (no packing, sdpa while training without attention dropout) and
    gives its runs version 2's identity (none recorded), so a folder made then declares and reproduces its runs; the
    newest is the default; a version that cannot be run is a one-line error."""
    from dilmbench import fastpath
    from dilmbench.errors import DilmbenchError
    from dilmbench.registry import EVALUATORS

    finetune = EVALUATORS.get("finetune")
    assert finetune.for_preset("quick", fast_version=2).learner_identity(tiny_llama) == {}
    assert finetune.for_preset("quick", fast_version=3).learner_identity(tiny_llama) == {"fast_path": 3}
    assert "fast_version" not in finetune.for_preset("quick", fast_version=2).identity()["config"]
    with pytest.raises(DilmbenchError, match="fast_version must be"):
        finetune.for_preset("quick", fast_version=1)
    sdpa_calls, packed = [], []
    real_sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: sdpa_calls.append(1) or real_sdpa(*a, **k))
    real_forward = fastpath.Packer.forward
    monkeypatch.setattr(fastpath.Packer, "forward", lambda self, *a: packed.append(1) or real_forward(self, *a))
    tok = load_tokenizer(tiny_llama)
    tok.pad_token = tok.eos_token
    for version, uses_sdpa in ((2, True), (0, False)):
        sdpa_calls.clear()
        packed.clear()
        recipe = FinetuneRecipe(steps=2, fast=True, fast_version=version)
        train_classifier(load_classifier(tiny_llama, 2, 0, "cpu"), tok, TEXTS, LABELS, recipe, 0, "cpu")
        assert bool(sdpa_calls) is uses_sdpa and bool(packed) is not uses_sdpa, version


@pytest.mark.parametrize("learner", ["tiny_bert", "tiny_llama"])
def test_packed_steps_are_train_steps_math(learner, request, monkeypatch):
    """fastpath.PackedSteps (DiLM's packed trajectory): in float32 without dropout, each step's loss and the weights
    after it are finetune.train_step's, with the caller's own optimizer and scheduler; dropout then comes from the
    stream (a mask differs between two seeds)."""
    from dilmbench.batching import tokenize
    from dilmbench.fastpath import PackedSteps
    from dilmbench.finetune import make_optimizer, train_step

    path = request.getfixturevalue(learner)
    tok = load_tokenizer(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    # (rows of at most 6 tokens, a forward of at most 8: a step runs as several forwards, each adding its share)
    monkeypatch.setattr("dilmbench.fastpath.PACK_ROW_TOKENS", 6)
    recipe = FinetuneRecipe(steps=6, lr=5e-3, max_batch_size=4, micro_batch_tokens=8)
    ref = no_dropout(load_classifier(path, 2, 3, "cpu"))
    new = no_dropout(load_classifier(path, 2, 3, "cpu"))
    from dilmbench.fastpath import Packer

    if not Packer.fits(new):  # (BERT on transformers 4.56: DiLM's trajectory then keeps train_step)
        pytest.skip("this transformers' model does not route attention through AttentionInterface: no packing there")
    packed = PackedSteps(new, tok, recipe, seed=0, device="cpu")
    assert packed.active
    feats = tokenize(tok, TEXTS, 32)
    opts = [make_optimizer(m, recipe) for m in (ref, new)]
    ref.train(), new.train()
    for step in range(6):
        idx = [(2 * step + j) % len(TEXTS) for j in range(4)]
        rows, y = [feats[i] for i in idx], torch.as_tensor([LABELS[i] for i in idx])
        a = train_step(ref, tok, rows, y, *opts[0], recipe, "cpu")
        b = packed.step(new, rows, y.numpy(), *opts[1])
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6)
    for (name, p), q in zip(ref.named_parameters(), new.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=2e-5, msg=lambda m: f"{name}: {m}")
    masks = [PackedSteps(load_classifier(path, 2, 3, "cpu"), tok, recipe, seed=s, device="cpu").stream.keep_mask(
        (64,), 0.5, torch.float32) for s in (0, 1)]
    assert not torch.equal(*masks)
