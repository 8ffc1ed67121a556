"""The paper preset, unchanged, at its real model sizes: stand-ins of bert-base-uncased and gpt2 (real configurations,
random weights, tokenizers of their kind and size) named through the model map. One task and the smallest slices:
DiLM's three stages a step or two each at the reference's generation length (its batches cut to 8-16 examples: at
the reference's 64 / 200 a float32 matching update alone takes minutes on 2 cores; benchmarks/speed/paper_rehearsal.py runs
them whole), a fine-tune at 512-token inputs, the dry run of the same command."""
import json

import pytest
from click.testing import CliRunner

from dilmbench.cli import main

from conftest import FILLER, NEG, POS

pytestmark = pytest.mark.rehearsal


def test_paper_preset_runs_every_stage_at_real_shapes(glue_dir, tmp_path, monkeypatch):
    from dilmbench.batching import tokenize
    from dilmbench.models import load_tokenizer
    from dilmbench.rehearsal import build_standins

    corpus = [" ".join(POS + NEG + FILLER)] * 5 + POS + NEG + FILLER
    model_map = build_standins(["bert-base-uncased", "gpt2"], tmp_path / "models", corpus)
    monkeypatch.setenv("DILMBENCH_MODEL_MAP", str(model_map))
    assert len(load_tokenizer("gpt2")) == 50257 and len(load_tokenizer("bert-base-uncased")) == 30522
    # a set whose texts are far longer than 512 tokens: the paper preset's fine-tune reads 512 of them
    long_dir = tmp_path / "long"
    long_dir.mkdir()
    text = " ".join((POS + FILLER) * 40)
    (long_dir / "set00.jsonl").write_text("".join(json.dumps({"sentence": text, "label": y}) + "\n" for y in (0, 1)))
    assert len(tokenize(load_tokenizer("bert-base-uncased"), [(text,)], 512)[0]["input_ids"]) == 512
    cfg = tmp_path / "rehearsal.yaml"
    cfg.write_text(json.dumps({"preset": "paper", "method_options": {"dilm": {
        "lm_steps": 1, "outer_loops": 1, "inner_loops": 2, "learner_steps": 1, "n_repsets": 1, "pool_batches": 1,
        "gen_interval": 1, "sample_factor": 2, "ckpt_every": 1000, "syn_batch": 8, "real_batch": 16,
        "learner_batch_size": 16, "lm_batch_size": 16, "n_clusters": 8, "gen_batch_size": 8}}}))
    args = ["run", "--config", str(cfg), "--task", "sst2", "--methods", f"random,dilm,file:{long_dir}", "--dpc", "2",
            "--sets", "1", "--inits", "1", "--learners", "bert-base-uncased", "--steps", "1", "--dev-size", "20",
            "--data-dir", str(glue_dir), "--device", "cpu", "--out", str(tmp_path / "out"), "--no-progress"]
    dry = CliRunner().invoke(main, [*args, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "stage 2: gradient matching" in dry.output and "total: 3 runs to make" in dry.output
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    records = [json.loads(p.read_text()) for p in (tmp_path / "out" / "runs").rglob("*.json")]
    assert len(records) == 3
    for rec in records:
        assert rec["config"]["evaluator_config"]["max_length"] == 512
        assert rec["models"]["learner"]["revision"].startswith("local:")  # a stand-in never passes for the hub's
    meta = next((tmp_path / "out" / "sets" / "sst2" / "dilm").rglob("*.meta.json"))
    prov = json.loads(meta.read_text())["provenance"]
    assert prov["config"]["generator"] == "gpt2" and prov["config"]["max_new_tokens"] == "task"
    assert set(prov["generator_stage_seconds"]) >= {"lm", "gm"}
