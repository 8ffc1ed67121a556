import numpy as np
import pytest
import torch

from dilmbench.api import EvalContext
from dilmbench.finetune import FinetuneRecipe, endless_batches, load_classifier, make_optimizer, train_classifier
from dilmbench.models import load_tokenizer
from dilmbench.registry import EVALUATORS
from dilmbench.tasks import TASKS, load_task_data
from dilmbench.textset import TextSet


def test_recipe_defaults_are_the_papers():
    r = FinetuneRecipe()
    assert (r.steps, r.lr, r.weight_decay, r.scheduler, r.warmup_ratio, r.max_grad_norm) == (200, 1e-4, 0.01, "cosine", 0.5, 1.0)
    assert r.batch_size(10) == 10 and r.batch_size(60) == 60 and r.batch_size(200) == 64


def test_optimizer_groups_and_schedule(tiny_bert):
    model = load_classifier(tiny_bert, 2, seed=0, device="cpu")
    opt, sched = make_optimizer(model, FinetuneRecipe(steps=10))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)] for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and max(lrs) == pytest.approx(1e-4) and np.argmax(lrs) == 5 and lrs[-1] < lrs[6]


def test_fresh_head_per_seed(tiny_bert):
    a = load_classifier(tiny_bert, 2, seed=1, device="cpu").classifier.weight
    b = load_classifier(tiny_bert, 2, seed=1, device="cpu").classifier.weight
    c = load_classifier(tiny_bert, 2, seed=2, device="cpu").classifier.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_endless_batches_drop_partial_and_cover():
    it = endless_batches(10, 4, seed=0)
    first_epoch = [next(it) for _ in range(2)]
    assert all(len(b) == 4 for b in first_epoch) and len(set(np.concatenate(first_epoch))) == 8


def test_weights_scale_each_examples_loss(tiny_bert):
    tok = load_tokenizer(tiny_bert)
    texts, labels = [("good fun",), ("bad dull",), ("great",), ("awful",)], [1, 0, 1, 0]
    recipe = FinetuneRecipe(steps=1)
    plain = train_classifier(load_classifier(tiny_bert, 2, 0, "cpu"), tok, texts, labels, recipe, 0, "cpu")
    doubled = train_classifier(load_classifier(tiny_bert, 2, 0, "cpu"), tok, texts, labels, recipe, 0, "cpu", weights=[2.0] * 4)
    assert doubled[0] == pytest.approx(2 * plain[0], rel=1e-5)


def test_finetune_evaluator_learns_the_fixture(glue_dir, tiny_bert, tmp_path):
    data = load_task_data(TASKS["sst2"], str(glue_dir), dev_size=10)
    ctx = EvalContext(data=data, device="cpu", cache_dir=tmp_path, progress=False)
    ev = EVALUATORS.get("finetune")(learners=[tiny_bert], steps=60, lr=1e-2)
    pool_texts, pool_labels = data.texts("pool"), data.labels("pool")
    ts = TextSet(task="sst2", text_fields=("sentence",), texts=pool_texts[:40], labels=pool_labels[:40])
    res = ev.evaluate(ctx, ts, tiny_bert, seed=0)
    assert res["eval_examples"] == 40 and res["batch_size"] == 40
    assert res["train_loss_last"] < 0.97 * res["train_loss_first"]
    assert res["score"] == res["accuracy"]
    # the score is the accuracy of this very model's predictions on the evaluation split: rebuilt by hand from the
    # same seed (fresh head, the recipe, the evaluation pass), it must match to the last digit
    from dilmbench.batching import tokenize
    from dilmbench.finetune import predict_logits

    tok = load_tokenizer(tiny_bert)
    model = load_classifier(tiny_bert, 2, 0, "cpu")
    train_classifier(model, tok, ts.texts, ts.labels, ev.recipe, 0, "cpu")
    preds = predict_logits(model, tokenize(tok, data.texts("eval"), 128), tok, 256, "cpu").argmax(1)
    assert res["score"] == float((preds == data.labels("eval")).mean())
    again = ev.evaluate(ctx, ts, tiny_bert, seed=0)
    assert again["score"] == res["score"]  # seeded: reproducible


def test_micro_batches_give_the_same_gradient_as_one_padded_batch(tiny_bert):
    from dilmbench.batching import tokenize
    from dilmbench.finetune import micro_batches, train_step

    tok = load_tokenizer(tiny_bert)
    texts = [("good",), ("the movie was a boring and dull story with a weak cast and a flat plot",), ("fine fun",),
             ("this film is great",), ("awful",)]
    feats = tokenize(tok, texts, 64)
    labels = torch.tensor([1, 0, 1, 1, 0])
    weights = torch.tensor([1.0, 0.5, 2.0, 1.0, 0.0])
    assert sorted(np.concatenate(micro_batches([len(f["input_ids"]) for f in feats], 20)).tolist()) == [0, 1, 2, 3, 4]
    grads = []
    for tokens in (0, 20):
        model = load_classifier(tiny_bert, 2, 0, "cpu")
        model.eval()  # no dropout, so both paths are deterministic
        recipe = FinetuneRecipe(steps=1, micro_batch_tokens=tokens, max_grad_norm=None)
        opt, sched = make_optimizer(model, recipe)
        loss = train_step(model, tok, feats, labels, opt, sched, recipe, "cpu", weights)
        grads.append((loss, [p.grad.clone() for p in model.parameters()]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_symmetric_cross_entropy_is_alpha_ce_plus_beta_reverse_ce():
    import math

    import torch

    from dilmbench.finetune import symmetric_cross_entropy

    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    p = torch.softmax(logits, -1)
    # reverse CE with the one-hot label: -sum_k p_k log q_k, log 0 taken as -4 -> 4 * (1 - p_y)
    want = [0.1 * -math.log(p[i, 0]) + 1.0 * 4.0 * (1 - p[i, 0]) for i in range(2)]
    got = symmetric_cross_entropy(alpha=0.1, beta=1.0, log_zero=-4.0)(logits, labels)
    assert got.tolist() == pytest.approx([float(w) for w in want], rel=1e-5)


def test_cpu_bf16_runs_under_autocast_and_stays_out_of_the_default_identity(glue_dir, tiny_bert, tmp_path):
    from dilmbench.batching import tokenize
    from dilmbench.finetune import predict_logits

    # off (the default): the identity finished results were made under, without the key
    default = EVALUATORS.get("finetune")(learners=[tiny_bert])
    assert "cpu_bf16" not in default.identity()["config"] and default.recipe.cpu_bf16 is False
    on = EVALUATORS.get("finetune")(learners=[tiny_bert], cpu_bf16=True, steps=20, lr=1e-2)
    assert on.identity()["config"]["cpu_bf16"] is True
    # on: the forward passes see bfloat16 activations, training still learns, logits stay close to float32's
    tok = load_tokenizer(tiny_bert)
    model = load_classifier(tiny_bert, 2, 0, "cpu")
    seen = []
    hook = model.classifier.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    data = load_task_data(TASKS["sst2"], str(glue_dir), dev_size=10)
    losses = train_classifier(model, tok, data.texts("pool")[:20], data.labels("pool")[:20], on.recipe, 0, "cpu")
    assert seen and set(seen) == {torch.bfloat16}
    assert np.mean(losses[-5:]) < losses[0]
    feats = tokenize(tok, data.texts("eval"), 128)
    seen.clear()
    half = predict_logits(model, feats, tok, 256, "cpu", cpu_bf16=True)
    assert set(seen) == {torch.bfloat16}
    seen.clear()
    full = predict_logits(model, feats, tok, 256, "cpu")
    hook.remove()
    assert set(seen) == {torch.float32}
    assert half.dtype == np.float32 and np.abs(half - full).max() < 0.1 and not np.array_equal(half, full)


def test_a_decoder_saved_in_16_bits_is_a_float32_learner(tiny_gpt, tmp_path):
    """A causal LM whose checkpoint is bf16 (as gemma-3's and the cached SmolLM2's are) loads as a sequence classifier
    with float32 weights, its pad token from end-of-text, and trains and scores on every path."""
    from transformers import AutoModelForCausalLM

    from dilmbench.finetune import learner_tokenizer, logits_of

    d = tmp_path / "bf16-gpt"
    AutoModelForCausalLM.from_pretrained(tiny_gpt).to(torch.bfloat16).save_pretrained(d)
    load_tokenizer(tiny_gpt).save_pretrained(d)
    tok = learner_tokenizer(str(d))
    texts, labels = ["good great fine", "bad awful poor", "great good", "awful bad"], [1, 0, 1, 0]
    for fast in (False, True):
        model = load_classifier(str(d), 2, 0, "cpu")
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert model.config.pad_token_id == tok.eos_token_id
        losses = train_classifier(model, tok, texts, labels, FinetuneRecipe(steps=3, fast=fast), 0, "cpu")
        assert len(losses) == 3 and all(np.isfinite(losses))
        assert logits_of(model, tok, texts, FinetuneRecipe(), "cpu").shape == (4, 2)
