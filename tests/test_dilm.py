import json

import numpy as np
import pytest
import torch

from dilmbench.api import MethodContext
from dilmbench.batching import collate, tokenize
from dilmbench.errors import DilmbenchError
from dilmbench.finetune import load_classifier
from dilmbench.models import load_tokenizer
from dilmbench.registry import METHODS
from dilmbench.tasks import TASKS, load_task_data


def tiny_config(tiny_gpt, tiny_bert, **kw):
    cfg = dict(generator=tiny_gpt, learner=tiny_bert, lm_steps=4, lm_batch_size=8, lm_lr=1e-3, max_length=24,
               outer_loops=2, inner_loops=2, learner_steps=2, learner_batch_size=8, real_batch=6, real_accum=1,
               repset_dpc=6, n_repsets=2, syn_batch=4, gm_lr=1e-4, gen_interval=1, pool_batches=2, n_clusters=4,
               sample_factor=2, gen_batch_size=16, max_new_tokens=8, ckpt_every=2, bf16=False)
    cfg.update(kw)
    return cfg


def ctx_for(task, glue_dir, tiny_bert, tmp_path):
    data = load_task_data(TASKS[task], str(glue_dir), dev_size=12)
    return MethodContext(data=data, encoder=tiny_bert, pooling="mean", device="cpu", cache_dir=tmp_path / "cache",
                         progress=False)


def test_class_tokens_and_separator_round_trip(tiny_gpt):
    from dilmbench.methods.dilm import Generator

    gen = Generator.from_pretrained(tiny_gpt, num_labels=3)
    emb = gen.model.get_input_embeddings().weight
    for c in gen.class_ids:
        assert torch.equal(emb[c], emb[gen.eos_id])  # class tokens start as end-of-text (the reference's choice)
    old = min(gen.new_token_ids)
    assert gen.pad_id != gen.eos_id and gen.new_token_ids == list(range(old, emb.shape[0]))
    for t in (gen.sep_id, gen.pad_id):  # separator and pad: the mean pretrained row, never a copy of end-of-text
        torch.testing.assert_close(emb[t], emb[:old].mean(0))
        assert not torch.allclose(emb[t], emb[gen.eos_id])
    ids = gen.encode_example(("the movie was good", "a dull plot"), 2, max_length=32)
    assert ids[0] == gen.class_ids[2] and ids[-1] == gen.eos_id and ids.count(gen.sep_id) == 1
    assert gen.decode(ids[1:], 2) == ("the movie was good", "a dull plot")
    assert gen.decode(ids[1:], 1) == ("the movie was good",)
    single = gen.encode_example(("fine fun",), 0, max_length=32)
    assert gen.decode(single[1:], 2) is None  # a pair without its separator is rejected
    assert len(gen.encode_example(("good " * 50,), 1, max_length=10)) == 10


def test_head_gradient_equals_full_autograd_and_so_does_the_generators(tiny_gpt, tiny_bert):
    from dilmbench.methods.dilm import (Generator, head_gradient, head_gradient_full_autograd, matching_loss)

    gen = Generator.from_pretrained(tiny_gpt, num_labels=2)
    learner = load_classifier(tiny_bert, 2, seed=0, device="cpu")
    learner.eval()
    tok = load_tokenizer(tiny_bert)
    texts = [("the movie was good",), ("a great cast",), ("fun and warm",), ("it was fine",)]
    seqs = [gen.encode_example(t, 1, 32) for t in texts]
    batch = collate(tok, tokenize(tok, texts, 32), "cpu")
    labels = torch.ones(4, dtype=torch.long)
    real_batch = collate(tok, tokenize(tok, [("good",), ("superb film",)], 32), "cpu")
    g_real = head_gradient(learner, real_batch, torch.ones(2, dtype=torch.long))
    torch.testing.assert_close(g_real, head_gradient_full_autograd(learner, real_batch, torch.ones(2, dtype=torch.long)))

    results = []
    for fn in (head_gradient, head_gradient_full_autograd):
        gen.model.zero_grad(set_to_none=True)
        w = torch.softmax(-gen.example_losses(seqs, "cpu"), dim=0)
        g_syn = fn(learner, batch, labels, weights=w, create_graph=True)
        matching_loss(g_real, g_syn).backward()
        results.append((g_syn.detach(), [p.grad.clone() for p in gen.model.parameters() if p.grad is not None]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-7)
    assert len(results[0][1]) == len(results[1][1]) > 0
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-8)
    assert any(g.abs().sum() > 0 for g in results[0][1])  # the matching loss does reach the generator


@pytest.mark.parametrize("task", ["sst2", "mnli"])
def test_both_stages_end_to_end_give_valid_sets(task, glue_dir, tiny_gpt, tiny_bert, tmp_path):
    ctx = ctx_for(task, glue_dir, tiny_bert, tmp_path)
    # enough LM training for the tiny generator to learn the format (a pair needs its separator)
    # (the pair task with packed generator losses, so both stages run packed once end to end)
    lm = dict(lm_steps=40, lm_lr=5e-3, max_new_tokens=16, lm_pack=task == "mnli")
    m = METHODS.get("dilm")(**tiny_config(tiny_gpt, tiny_bert, **lm))
    ts = m.make_set(ctx, dpc=2, seed=3, set_index=0)
    n = TASKS[task].num_labels
    ts.validate(TASKS[task])
    assert ts.class_counts(n) == [2] * n and all(len(t) == len(TASKS[task].text_fields) for t in ts.texts)
    assert all(all(s.strip() for s in t) for t in ts.texts)
    assert ts.provenance["source"] == "generated" and "gm-" in ts.provenance["generator_checkpoint"]
    secs = ts.provenance["generator_stage_seconds"]  # each stage's wall time, kept with the trained generator
    assert set(secs) == {"lm", "gm"} and secs["lm"] > 0 and secs["gm"] > 0
    drawn = ts.provenance["sampling"]  # per class: samples drawn, how many decoded
    assert set(drawn) == set(TASKS[task].label_names)
    assert all(d["drawn"] >= d["usable"] >= 2 * m.config["sample_factor"] for d in drawn.values())
    lm_dir, gm_dir = m.stage_dirs(ctx)
    assert json.loads((lm_dir / "final" / "progress.json").read_text())["step"] == 40
    assert json.loads((gm_dir / "final" / "progress.json").read_text())["step"] == 4
    # a second DPC / set reuses the trained generator (no retraining) and differs by its seed
    other = m.make_set(ctx, dpc=2, seed=4, set_index=1)
    assert other.texts != ts.texts
    # (with the class filter, a stage-3 option: the same cached stage 1, no retraining)
    vanilla = METHODS.get("dilm_vanilla")(**tiny_config(tiny_gpt, tiny_bert, class_filter=0.5, **lm))
    vs = vanilla.make_set(ctx, dpc=2, seed=3, set_index=0)
    assert vs.class_counts(n) == [2] * n
    assert "lm-" in vs.provenance["generator_checkpoint"] and vs.provenance["config"]["gm"] is False
    assert vs.provenance["generator_stage_seconds"] == {"lm": secs["lm"]}  # the same cached stage 1


def test_killed_stage_resumes_from_its_checkpoint(glue_dir, tiny_gpt, tiny_bert, tmp_path, monkeypatch):
    from dilmbench import checkpoint as dilm_mod

    ctx = ctx_for("sst2", glue_dir, tiny_bert, tmp_path)
    cfg = tiny_config(tiny_gpt, tiny_bert, lm_steps=6, ckpt_every=2)
    whole = METHODS.get("dilm_vanilla")(**cfg)
    lm_dir, _ = whole.stage_dirs(ctx)
    reference = whole.train_lm(ctx, tmp_path / "uninterrupted")

    saves = {"n": 0}
    real_save = dilm_mod.save_state

    def save_then_die(path, *a, **k):
        real_save(path, *a, **k)
        saves["n"] += 1
        if saves["n"] == 2:  # killed right after the step-4 checkpoint
            raise KeyboardInterrupt

    monkeypatch.setattr(dilm_mod, "save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        whole.train_lm(ctx, lm_dir)
    assert json.loads((lm_dir / "last" / "progress.json").read_text())["step"] == 4
    assert not (lm_dir / "final").exists()
    monkeypatch.setattr(dilm_mod, "save_state", real_save)
    resumed = METHODS.get("dilm_vanilla")(**cfg).train_lm(ctx, lm_dir)
    assert json.loads((lm_dir / "final" / "progress.json").read_text())["step"] == 6
    for a, b in zip(reference.model.parameters(), resumed.model.parameters()):
        torch.testing.assert_close(a, b)  # same data order, optimizer state and RNG: the same model


def test_gradient_matching_resumes(glue_dir, tiny_gpt, tiny_bert, tmp_path, monkeypatch):
    from dilmbench import checkpoint as dilm_mod
    from dilmbench.methods.dilm import Generator

    ctx = ctx_for("sst2", glue_dir, tiny_bert, tmp_path)
    # a checkpoint after every outer loop; a new diverse-batch pool every 2, so the resume lands mid-pool
    cfg = tiny_config(tiny_gpt, tiny_bert, outer_loops=3, inner_loops=2, ckpt_every=2, gen_interval=2,
                      learner_pack=True)  # (the packed trajectory: its dropout stream is seeded per outer loop)
    m = METHODS.get("dilm")(**cfg)
    lm_dir, gm_dir = m.stage_dirs(ctx)
    m.train_lm(ctx, lm_dir)

    def stage1():
        return Generator.from_pretrained(str(lm_dir / "final"), 2, add_tokens=False)

    reference = m.gradient_matching(ctx, stage1(), tmp_path / "uninterrupted")
    gen = stage1()
    real_save = dilm_mod.save_state

    def die_after_first(path, *a, **k):
        real_save(path, *a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(dilm_mod, "save_state", die_after_first)
    with pytest.raises(KeyboardInterrupt):
        m.gradient_matching(ctx, gen, gm_dir)
    assert json.loads((gm_dir / "last" / "progress.json").read_text())["step"] == 2
    monkeypatch.setattr(dilm_mod, "save_state", real_save)
    resumed = m.gradient_matching(ctx, stage1(), gm_dir)
    assert json.loads((gm_dir / "final" / "progress.json").read_text())["step"] == 6
    # same real-batch stream, same diverse-batch pool, same optimizer and RNG state: the same generator
    moved = False
    for a, b, c in zip(reference.model.parameters(), resumed.model.parameters(), stage1().model.parameters()):
        torch.testing.assert_close(a, b)
        moved |= not torch.equal(a, c)
    assert moved


def test_stage_identity_follows_what_changes_the_weights(glue_dir, tiny_gpt, tiny_bert, tmp_path):
    ctx = ctx_for("sst2", glue_dir, tiny_bert, tmp_path)
    base = METHODS.get("dilm")(**tiny_config(tiny_gpt, tiny_bert)).stage_dirs(ctx)
    # stage-3 sampling and checkpoint spacing do not retrain anything
    assert METHODS.get("dilm")(**tiny_config(tiny_gpt, tiny_bert, sample_factor=7, ckpt_every=9)).stage_dirs(ctx) == base
    lm, gm = METHODS.get("dilm")(**tiny_config(tiny_gpt, tiny_bert, gm_lr=5e-5)).stage_dirs(ctx)
    assert lm == base[0] and gm != base[1]  # a stage-2 setting reuses the stage-1 generator
    lm, gm = METHODS.get("dilm")(**tiny_config(tiny_gpt, tiny_bert, lm_lr=2e-3)).stage_dirs(ctx)
    assert lm != base[0] and gm != base[1]


def test_vanilla_identity_ignores_stage_two_settings(tiny_gpt, tiny_bert):
    from dilmbench.methods.dilm import PAPER, STAGE2_KEYS

    assert STAGE2_KEYS <= set(PAPER)
    for name, same in (("dilm_vanilla", True), ("dilm", False)):
        a = METHODS.get(name)(**tiny_config(tiny_gpt, tiny_bert)).identity()
        b = METHODS.get(name)(**tiny_config(tiny_gpt, tiny_bert, gm_lr=5e-5, outer_loops=3)).identity()
        assert (a == b) is same
    # a stage-1 or stage-3 setting still tells vanilla runs apart
    vanilla = METHODS.get("dilm_vanilla")
    assert vanilla(**tiny_config(tiny_gpt, tiny_bert, lm_lr=2e-3)).identity() != vanilla(**tiny_config(tiny_gpt, tiny_bert)).identity()
    # like every method's, DiLM's identity carries its code's declared version (bumped when a change alters sets)
    bumped = type("DiLMv2", (vanilla,), {"version": "2"})
    assert bumped(**tiny_config(tiny_gpt, tiny_bert)).identity() == {
        **vanilla(**tiny_config(tiny_gpt, tiny_bert)).identity(), "version": "2"}


def test_lm_stage_micro_batches_give_the_same_model(glue_dir, tiny_gpt, tiny_bert, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # without dropout (SmolLM2 and gpt2-as-DiLM-trains-it differ there; dropout masks depend on the batch's shape)
    no_drop = tmp_path / "tiny-gpt-no-dropout"
    base = AutoModelForCausalLM.from_pretrained(tiny_gpt, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    base.save_pretrained(no_drop)
    AutoTokenizer.from_pretrained(tiny_gpt).save_pretrained(no_drop)
    ctx = ctx_for("sst2", glue_dir, tiny_bert, tmp_path)
    models = []
    for micro in (0, 12):  # one padded batch / length-sorted chunks of at most 12 tokens
        m = METHODS.get("dilm_vanilla")(**tiny_config(str(no_drop), tiny_bert, lm_steps=3, lm_micro_batch_tokens=micro))
        models.append(m.train_lm(ctx, tmp_path / f"lm-{micro}").model)
    moved = False
    for a, b, c in zip(models[0].parameters(), models[1].parameters(), base.parameters()):
        # Adam divides by the gradient's own scale, so float-order noise in a ~0 gradient shows up at ~1e-6
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        moved |= a.shape == c.shape and not torch.allclose(a, c)
    assert moved  # the steps did train


def test_conditioning_accuracy_sees_whether_class_tokens_matter(glue_dir, tiny_gpt, tiny_bert, tmp_path):
    from dilmbench.methods.dilm import Generator

    ctx = ctx_for("sst2", glue_dir, tiny_bert, tmp_path)
    texts, labels = ctx.data.texts("pool")[:40], ctx.data.labels("pool")[:40]
    fresh = Generator.from_pretrained(tiny_gpt, 2)  # both class tokens start as end-of-text: no conditioning
    assert fresh.conditioning_accuracy(texts, labels, 24, "cpu") == pytest.approx(float((labels == 0).mean()))
    # the fixture's classes use different words; 60 steps leave the class tokens nearly unused, 300 do not
    m = METHODS.get("dilm_vanilla")(**tiny_config(tiny_gpt, tiny_bert, lm_steps=300, lm_lr=5e-3))
    trained = m.train_lm(ctx, tmp_path / "lm")
    assert trained.conditioning_accuracy(texts, labels, 24, "cpu") > 0.85


def test_label_word_initialisation_puts_each_class_row_at_its_words_embedding(tiny_gpt):
    from dilmbench.methods.dilm import Generator

    gen = Generator.from_pretrained(tiny_gpt, num_labels=2, class_init="label_words", label_names=("bad", "good"))
    emb = gen.model.get_input_embeddings().weight
    for c, word in enumerate(("bad", "good")):
        ids = gen.tok(" " + word, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(emb[gen.class_ids[c]], emb[ids].mean(0))
    assert not torch.allclose(emb[gen.class_ids[0]], emb[gen.class_ids[1]])
    with pytest.raises(Exception, match="label names"):
        Generator.from_pretrained(tiny_gpt, num_labels=2, class_init="label_words")


def test_example_loss_is_the_references_sum_over_padded_length(tiny_gpt):
    """The reference (arumaekawa/DiLM src/generator.py compute_loss): token cross-entropy with reduction none over a
    batch padded to a multiple of 8 by DataCollatorForLanguageModeling (labels -100 on pads), then mean over the
    padded positions: sum of the example's token losses / (padded length - 1)."""
    import torch.nn.functional as F
    from transformers import DataCollatorForLanguageModeling

    from dilmbench.methods.dilm import Generator

    gen = Generator.from_pretrained(tiny_gpt, num_labels=2)
    gen.model.eval()
    texts = [("good",), ("the movie was a fun and warm story",), ("it was dull and flat and boring and weak",)]
    seqs = [gen.encode_example(t, i % 2, None) for i, t in enumerate(texts)]
    batch = DataCollatorForLanguageModeling(tokenizer=gen.tok, mlm=False, pad_to_multiple_of=8)(
        [{"input_ids": s} for s in seqs])
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].shape[1] > max(len(s) for s in seqs)
    with torch.no_grad():
        logits = gen.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ref = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                              reduction="none").reshape(len(seqs), -1).mean(-1)
        ours = gen.example_losses(seqs, "cpu")
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
        # micro-batches given the whole batch's padded length get the same per-example losses
        parts = torch.cat([gen.example_losses(seqs[:1], "cpu", batch["input_ids"].shape[1]),
                           gen.example_losses(seqs[1:], "cpu", batch["input_ids"].shape[1])])
        torch.testing.assert_close(parts, ref, rtol=1e-5, atol=1e-6)
        # the old normalisation (each example's own mean) is a different number: short examples weigh as much
        mean_gen = Generator(gen.model, gen.tok, 2, loss_norm="mean")
        assert not torch.allclose(mean_gen.example_losses(seqs, "cpu"), ref)


def test_pad_and_class_tokens_are_never_sampled(tiny_gpt):
    from dilmbench.methods.dilm import Generator

    gen = Generator.from_pretrained(tiny_gpt, num_labels=2)
    with torch.no_grad():  # make pad and the class tokens the likeliest next tokens everywhere
        bias = torch.zeros(gen.model.lm_head.weight.shape[0])
        bias[[gen.pad_id, *gen.class_ids]] = 50.0
        gen.model.lm_head.bias = torch.nn.Parameter(bias)
    stats = {}
    _, seqs = gen.sample(1, 8, 1, seed=0, top_p=1.0, top_k=0, max_new_tokens=6, batch_size=8, device="cpu",
                         min_acceptance=0.0, stats=stats)
    body = [t for s in seqs for t in s[1:]]
    assert body and gen.pad_id not in body and not set(gen.class_ids) & set(body)
    assert stats["drawn"] % 8 == 0 and stats["usable"] >= 8 and stats["drawn"] >= stats["usable"]


def test_sampler_fails_on_a_measured_acceptance_rate_not_a_run_of_bad_batches(tiny_gpt):
    from dilmbench.errors import DilmbenchError
    from dilmbench.methods.dilm import Generator

    gen = Generator.from_pretrained(tiny_gpt, num_labels=2)
    with torch.no_grad():  # a generator that never writes the pair separator
        bias = torch.zeros(gen.model.lm_head.weight.shape[0])
        bias[gen.sep_id] = -50.0
        gen.model.lm_head.bias = torch.nn.Parameter(bias)
    with pytest.raises(DilmbenchError, match=r"rate of 0\.0%.*0 of 16 samples"):
        gen.sample(0, 4, 2, seed=0, top_p=1.0, top_k=0, max_new_tokens=4, batch_size=4, device="cpu")


def test_new_rows_get_their_own_adamw_learning_rate(tiny_gpt):
    from transformers import AutoModelForCausalLM

    from dilmbench.finetune import FinetuneRecipe, make_optimizer
    from dilmbench.methods.dilm.method import NewRowsLR

    rows = [3, 5]
    moved = []
    for lr in (None, 1e-2):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_gpt)
        before = model.get_input_embeddings().weight.detach().clone()
        opt, sched = make_optimizer(model, FinetuneRecipe(steps=10, lr=1e-3, warmup_ratio=0.0))
        rows_lr = NewRowsLR(model, rows, 1e-3, lr)
        ids = torch.tensor([[1, 3, 5, 7, 2]])
        model(input_ids=ids, labels=ids).loss.backward()
        rows_lr.before_step()
        opt.step()
        rows_lr.after_step()
        moved.append(model.get_input_embeddings().weight.detach() - before)
    others = [i for i in range(before.shape[0]) if i not in rows]
    torch.testing.assert_close(moved[1][others], moved[0][others])  # the rest moves at the base rate
    torch.testing.assert_close(moved[1][rows], 10 * moved[0][rows])  # these rows at 10x (AdamW is linear in lr)
    assert moved[0][rows].abs().sum() > 0


def test_paper_preset_matches_the_reference_settings():
    from dilmbench.methods.dilm import PAPER
    from dilmbench.methods.dilm.method import max_new_tokens
    from dilmbench.methods.dilm.reference import DEVIATIONS, REFERENCE

    differ = {k: (PAPER[k], ref) for k, (ref, _) in REFERENCE.items() if PAPER[k] != ref}
    assert not differ, f"paper preset differs from the reference: {differ}"
    # (cpu_bf16: CPU only, the reference runs on CUDA; lm_pack: the padded losses' math, without the padding)
    suite_only = {"gm", "ckpt_every", "lm_micro_batch_tokens", "select_backend", "cpu_bf16", "lm_pack",
                  "learner_pack"}
    assert set(PAPER) == set(REFERENCE) | set(DEVIATIONS) | suite_only
    # generation length per task: the reference's total length less the class token
    assert [max_new_tokens(PAPER, TASKS[t]) for t in ("sst2", "qqp", "mnli")] == [67, 312, 420]
    # pair tasks get the reference's pair real batches (100 per class, 2 accumulated)
    cfg = METHODS.get("dilm")().task_config(TASKS["mnli"])
    assert (cfg["real_batch"], cfg["real_accum"]) == (100, 2)


def test_pair_settings_apply_on_pair_tasks_only_and_join_only_their_identity():
    from dilmbench.methods.dilm import QUICK

    dilm, vanilla = METHODS.get("dilm"), METHODS.get("dilm_vanilla")
    quick = dilm.for_preset("quick")
    on_mnli, on_sst2 = quick.task_config(TASKS["mnli"]), quick.task_config(TASKS["sst2"])
    assert (on_mnli["max_length"], on_mnli["max_new_tokens"], on_mnli["learner_max_length"]) == (128, 96, 128)
    assert (on_sst2["max_length"], on_sst2["max_new_tokens"]) == (QUICK["max_length"], QUICK["max_new_tokens"]) == (64, 48)
    # a single-text task's identity does not carry them (SST-2's finished sets keep theirs); a pair task's does
    assert "pair_overrides" not in quick.identity()["config"] and quick.task_identity(TASKS["sst2"]) == {}
    assert quick.task_identity(TASKS["mnli"]) == {"pair_overrides": QUICK["pair_overrides"]}
    assert dilm.for_preset("quick", pair_overrides={}).identity() == quick.identity()
    assert dilm.for_preset("quick", pair_overrides={}).task_identity(TASKS["mnli"]) != quick.task_identity(TASKS["mnli"])
    # without matching, the stage-2 settings among them change nothing and stay out
    assert vanilla.for_preset("quick").task_identity(TASKS["mnli"]) == {"pair_overrides": {"max_length": 128, "max_new_tokens": 96}}
    # an option set by hand holds on pair tasks too (preset or not)
    assert dilm.for_preset("quick", max_length=80).task_config(TASKS["mnli"])["max_length"] == 80
    assert dilm(real_batch=50).task_config(TASKS["qqp"])["real_batch"] == 50
    assert dilm().task_config(TASKS["qqp"])["real_batch"] == 100
    with pytest.raises(DilmbenchError, match="pair_overrides names unknown option.*max_len"):
        dilm(pair_overrides={"max_len": 128})


def test_the_runner_puts_a_methods_task_settings_in_the_set_identity(glue_dir):
    from dilmbench.runner import MethodSpec, Runner

    runner = Runner({"seed": 0, "encoder": "enc", "pooling": "mean"}, "unused", progress=False)
    runner.methods = {"dilm": METHODS.get("dilm").for_preset("quick")}
    spec = MethodSpec.parse("dilm", {})
    ident = {t: runner.set_identity(load_task_data(TASKS[t], str(glue_dir), dev_size=12), spec, 5, 0)["method"]
             for t in ("sst2", "mnli")}
    assert "pair_overrides" not in ident["sst2"] and ident["mnli"]["pair_overrides"]["max_length"] == 128
    assert {k: v for k, v in ident["mnli"].items() if k != "pair_overrides"} == ident["sst2"]


def test_the_start_token_choice_travels_with_the_checkpoint(tiny_gpt, tmp_path):
    from dilmbench import checkpoint
    from dilmbench.methods.dilm import Generator

    gen = Generator.from_pretrained(tiny_gpt, num_labels=2, bos_prefix=True)
    checkpoint.save_state(tmp_path / "final", gen.model, gen.tok, None, None, 1)
    loaded = Generator.from_pretrained(str(tmp_path / "final"), 2, add_tokens=False)  # as a benchmark script loads it
    assert loaded.prefix == gen.prefix != [] and loaded.encode_example(("good",), 1, None)[0] == gen.prefix[0]
    assert Generator.from_pretrained(tiny_gpt, num_labels=2).prefix == []  # a fresh model: the reference's layout


def test_class_margin_is_the_log_likelihood_gap_between_classes(tiny_gpt):
    from dilmbench.methods.dilm import Generator

    gen = Generator.from_pretrained(tiny_gpt, num_labels=3)
    with torch.no_grad():  # make the class rows differ, so the margins are not all zero
        emb = gen.model.get_input_embeddings().weight
        for c, i in enumerate(gen.class_ids):
            emb[i] += 0.5 * (c + 1) * torch.randn(emb.shape[1], generator=torch.Generator().manual_seed(c))
    texts = [("a fine film",), ("dull , long and loud , with nothing to say",), ("ok",)]

    def log_likelihood(t, c):  # the obvious way: one sequence at a time, log-softmax of every next token
        ids = torch.tensor([gen.encode_example(t, c, None)])
        with torch.no_grad():
            logp = torch.log_softmax(gen.model(input_ids=ids).logits[0, :-1].float(), -1)
        return float(logp[torch.arange(ids.shape[1] - 1), ids[0, 1:]].sum())

    for label in range(3):
        ll = [[log_likelihood(t, c) for c in range(3)] for t in texts]
        want = [row[label] - max(v for c, v in enumerate(row) if c != label) for row in ll]
        got = gen.class_margins(texts, label, "cpu", batch_size=2)  # micro-batches of mixed lengths
        assert got == pytest.approx(want, abs=1e-3)
        assert len(set(round(v, 3) for v in got)) == 3


def test_class_filter_keeps_the_generators_most_class_typical_share(glue_dir, tiny_gpt, tiny_bert, tmp_path):
    from dilmbench.errors import DilmbenchError
    from dilmbench.methods.dilm import Generator

    m = METHODS.get("dilm_vanilla")(**tiny_config(tiny_gpt, tiny_bert, class_filter=0.25))
    m._gen = Generator.from_pretrained(tiny_gpt, num_labels=2)
    with torch.no_grad():
        m._gen.model.get_input_embeddings().weight[m._gen.class_ids[1]] += 1.0
    cand = [(f"text number {i} " + "word " * (i % 5),) for i in range(12)]
    margins = m._gen.class_margins(cand, 1, "cpu")
    kept = m.filter_by_class(cand, 1, dpc=2, share=0.25, device="cpu")
    best = sorted(sorted(range(12), key=lambda i: -margins[i])[:3])
    assert kept == [cand[i] for i in best]  # the top quarter, in sampling order
    assert len(m.filter_by_class(cand, 1, dpc=5, share=0.25, device="cpu")) == 5  # never fewer than DPC
    with pytest.raises(DilmbenchError, match="class_filter must be a share"):
        m.filter_by_class(cand, 1, dpc=2, share=1.5, device="cpu")
    # off (None) the option leaves the identity finished sets were made under; on, it is part of it
    plain = METHODS.get("dilm_vanilla")(**tiny_config(tiny_gpt, tiny_bert)).identity()
    assert "class_filter" not in plain["config"] and m.identity()["config"]["class_filter"] == 0.25


def test_cpu_bf16_puts_every_stage_under_autocast_and_off_changes_nothing(glue_dir, tiny_gpt, tiny_bert, tmp_path):
    from dilmbench.cache import stable_hash
    from dilmbench.methods.dilm import QUICK
    from dilmbench.methods.dilm.method import LM_KEYS

    ctx = ctx_for("sst2", glue_dir, tiny_bert, tmp_path)
    off = METHODS.get("dilm")(**tiny_config(tiny_gpt, tiny_bert))
    # off: the identity and the stage-1 cache key are the ones they were before the option existed
    assert "cpu_bf16" not in off.identity()["config"]
    cfg = off.task_config(ctx.task)
    data_id = {k: v for k, v in ctx.data.provenance().items() if k != "source"}
    assert off.stage_dirs(ctx)[0].name == "lm-" + stable_hash({"task": "sst2", "data": data_id,
                                                               **{k: cfg[k] for k in LM_KEYS}})
    on = METHODS.get("dilm")(**tiny_config(tiny_gpt, tiny_bert, cpu_bf16=True))
    assert on.identity()["config"]["cpu_bf16"] is True and QUICK["cpu_bf16"] is True
    assert all(a != b for a, b in zip(on.stage_dirs(ctx), off.stage_dirs(ctx)))  # both stages retrain
    # on: the generator's training forward passes and its sampling see bfloat16
    seen = []
    gen = on.new_generator(ctx)
    hook = gen.model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    gen.model.train()
    on.new_generator = lambda c: gen
    on.train_lm(ctx, tmp_path / "lm")
    assert seen and set(seen) == {torch.bfloat16}
    seen.clear()
    texts, _ = gen.sample(0, 4, 1, 0, 0.95, 0, 4, 4, "cpu")
    assert len(texts) == 4 and seen and set(seen) == {torch.bfloat16}
    hook.remove()
    seen.clear()
    off_gen = off.new_generator(ctx)
    off_gen.model.get_output_embeddings().register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    off_gen.sample(0, 2, 1, 0, 0.95, 0, 4, 4, "cpu")
    assert set(seen) == {torch.float32}


@pytest.mark.parametrize("arch", ["tiny_gpt", "tiny_llama"])
@pytest.mark.parametrize("bos_prefix,loss_norm", [(False, "reference"), (True, "reference"), (True, "mean")])
def test_packed_losses_are_the_padded_losses_and_gradients(arch, bos_prefix, loss_norm, request):
    """lm_pack: sequences end to end in rows, own positions, the output embedding only where a token is predicted; in
    float32 the padded batch's per-example losses and generator gradients, however the rows are cut."""
    from dilmbench.methods.dilm import Generator

    gen = Generator.from_pretrained(request.getfixturevalue(arch), num_labels=2, loss_norm=loss_norm,
                                    bos_prefix=bos_prefix)
    gen.model.eval()  # no dropout: its masks depend on the batch's shape
    texts = ["good", "the movie was a fun and warm story", "it was dull and flat and boring and weak", "fine",
             "a great cast in a slow plot", "x"]
    seqs = [gen.encode_example((t,), i % 2, None) for i, t in enumerate(texts)]
    padded = gen.example_losses(seqs, "cpu")
    w = torch.linspace(0.5, 2.0, len(seqs))
    gen.model.zero_grad(set_to_none=True)
    (padded * w).sum().backward()
    ref_grads = [p.grad.clone() for p in gen.model.parameters()]
    assert gen.can_pack()
    for row_tokens in (256, 12, 1):  # one row, several rows, one sequence a row
        packed = gen.packed_example_losses(seqs, "cpu", row_tokens=row_tokens)
        torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-6)
        gen.model.zero_grad(set_to_none=True)
        (packed * w).sum().backward()
        for p, ref in zip(gen.model.parameters(), ref_grads):
            torch.testing.assert_close(p.grad, ref, rtol=1e-4, atol=1e-6)
    # a packed row whose texts could see each other would change the later texts' losses: the mask is what keeps them
    # apart (positions alone do not)
    gen.model.zero_grad(set_to_none=True)
    with torch.no_grad():
        many = gen.packed_example_losses(seqs, "cpu", row_tokens=256)
        alone = torch.cat([gen.packed_example_losses([s], "cpu", gen_padded(seqs)) for s in seqs])
    torch.testing.assert_close(many, alone, rtol=1e-5, atol=1e-6)
    # stage 3's class filter reads the same losses packed (inference mode, the model's own attention)
    pairs = [(t,) for t in texts]
    padded_ll = gen.class_log_likelihoods(pairs, None, "cpu")
    gen.pack = True
    np.testing.assert_allclose(gen.class_log_likelihoods(pairs, None, "cpu"), padded_ll, rtol=1e-5, atol=1e-4)


def gen_padded(seqs):
    from dilmbench.methods.dilm.generator import reference_padded_length

    return reference_padded_length([len(s) for s in seqs])


def test_lm_pack_trains_the_same_generator_and_restores_its_attention(glue_dir, tiny_gpt, tiny_bert, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    no_drop = tmp_path / "tiny-gpt-no-dropout"
    AutoModelForCausalLM.from_pretrained(tiny_gpt, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0).save_pretrained(no_drop)
    AutoTokenizer.from_pretrained(tiny_gpt).save_pretrained(no_drop)
    ctx = ctx_for("sst2", glue_dir, tiny_bert, tmp_path)
    gens = []
    for pack in (False, True):
        m = METHODS.get("dilm_vanilla")(**tiny_config(str(no_drop), tiny_bert, lm_steps=3, lm_pack=pack))
        gens.append(m.train_lm(ctx, tmp_path / f"lm-{pack}"))
    assert gens[1].packs() and not gens[0].packs()
    assert gens[1].model.config._attn_implementation == gens[0].model.config._attn_implementation != "eager"
    for a, b in zip(gens[0].model.parameters(), gens[1].model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_lm_pack_off_keeps_the_identity_generators_and_sets_had(glue_dir, tiny_gpt, tiny_bert, tmp_path):
    ctx = ctx_for("sst2", glue_dir, tiny_bert, tmp_path)
    dilm = METHODS.get("dilm")
    old = dilm(**tiny_config(tiny_gpt, tiny_bert))
    off = dilm(**tiny_config(tiny_gpt, tiny_bert, lm_pack=False))
    on = dilm(**tiny_config(tiny_gpt, tiny_bert, lm_pack=True))
    assert old.identity() == off.identity() != on.identity()
    assert old.stage_dirs(ctx) == off.stage_dirs(ctx)
    assert on.stage_dirs(ctx)[0] != off.stage_dirs(ctx)[0]  # a new generator: packing changes bf16 rounding
    assert dilm.for_preset("quick").config["lm_pack"] is True and dilm().config["lm_pack"] is False
    # the same for stage 2's packed trajectory: off keeps the matching stage's cache, on makes a new one
    traj = dilm(**tiny_config(tiny_gpt, tiny_bert, learner_pack=True))
    assert dilm(**tiny_config(tiny_gpt, tiny_bert, learner_pack=False)).identity() == old.identity() != traj.identity()
    assert traj.stage_dirs(ctx)[0] == old.stage_dirs(ctx)[0] and traj.stage_dirs(ctx)[1] != old.stage_dirs(ctx)[1]
    vanilla = METHODS.get("dilm_vanilla")
    assert vanilla(**tiny_config(tiny_gpt, tiny_bert, learner_pack=True)).identity() == vanilla(
        **tiny_config(tiny_gpt, tiny_bert)).identity()
