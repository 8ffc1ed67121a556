"""The dry run's cost model (dilmbench.cost, dilmbench.dryrun) and the model map ($DILMBENCH_MODEL_MAP)."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from dilmbench.cli import main
from dilmbench.config import build_config, build_evaluator
from dilmbench.cost import KNOWN_CONFIGS, model_shape, shape_from_config
from dilmbench.errors import DilmbenchError


@pytest.mark.parametrize("model_id", sorted(KNOWN_CONFIGS))
def test_parameter_counts_match_the_models_transformers_builds(model_id):
    """The analytic count (no weights) against the model built from the same config on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModel

    known = dict(KNOWN_CONFIGS[model_id])
    cfg = AutoConfig.for_model(known.pop("model_type"), **known)
    with torch.device("meta"):
        model = AutoModel.from_config(cfg)
    real = sum(p.numel() for p in model.parameters())
    if not getattr(cfg, "tie_word_embeddings", True):  # AutoModel has no LM head; the count includes one
        real += cfg.vocab_size * cfg.hidden_size
    shape = shape_from_config(model_id, KNOWN_CONFIGS[model_id], "known")
    assert shape.params == pytest.approx(real, rel=0.02)


def test_forward_flops_match_torchs_flop_counter(tiny_bert):
    """2 x body parameters per token plus attention, against torch's own count of a forward pass."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tiny_bert, attn_implementation="eager").eval()  # (the counter sees its bmm)
    shape = model_shape(tiny_bert)
    b, s = 8, 48
    ids = torch.randint(5, 40, (b, s))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert shape.forward_flops(b * s, s) == pytest.approx(counter.get_total_flops(), rel=0.15)


def test_paper_preset_fine_tunes_at_the_references_512_tokens_and_quick_at_128():
    assert build_evaluator(build_config("paper")).recipe.max_length == 512
    assert build_evaluator(build_config("quick")).recipe.max_length == 128


def _dry(args, env=None):
    return CliRunner().invoke(main, ["run", *args, "--dry-run"], env=env)


def test_dry_run_counts_the_grid_and_writes_nothing(glue_dir, tiny_bert, tmp_path):
    out = tmp_path / "out"
    args = ["--preset", "quick", "--task", "sst2", "--methods", "random,herding", "--dpc", "2,3", "--sets", "2",
            "--inits", "2", "--learners", tiny_bert, "--encoder", tiny_bert, "--steps", "3", "--data-dir",
            str(glue_dir), "--out", str(out), "--no-progress"]
    res = _dry(args)
    assert res.exit_code == 0, res.output
    assert not out.exists()
    rows = [l.split() for l in res.output.splitlines() if l.startswith("sst2 ")]
    assert [(r[1], int(r[3]), int(r[4])) for r in rows if r[1] in ("random", "herding") and r[3].isdigit()] == [
        ("random", 8, 0), ("herding", 8, 0)]
    assert "total: 16 runs to make (0 done), 8 sets to make" in res.output
    assert "embed pool" in res.output  # herding embeds the pool once; random needs nothing
    # after part of the grid ran, the dry run counts it as done
    ran = CliRunner().invoke(main, ["run", *[a if a != "random,herding" else "random" for a in args]])
    assert ran.exit_code == 0, ran.output
    res = _dry(args)
    assert "total: 8 runs to make (8 done), 4 sets to make" in res.output
    # a third init of each set: random's sets are on disk and reused, so only herding's are made (and costed)
    res = _dry([a if a != "2" or args[i - 1] != "--inits" else "3" for i, a in enumerate(args)])
    assert "total: 16 runs to make (8 done), 4 sets to make" in res.output, res.output


def test_dry_run_hours_follow_the_stated_device(glue_dir, tiny_bert, tmp_path):
    from dilmbench.dryrun import dry_run, make_device
    from dilmbench.runner import Runner

    cfg = build_config("quick", overrides={"tasks": ["sst2"], "methods": ["random"], "dpc": [2], "sets": 1,
                                           "inits": 1, "data_source": str(glue_dir), "encoder": tiny_bert})
    cfg["evaluator_options"] = {"finetune": {"learners": [tiny_bert], "steps": 3}}
    _, slow = dry_run(Runner(cfg, tmp_path / "o", progress=False), make_device(1e12, 0.5, step_floor=0))
    _, fast = dry_run(Runner(cfg, tmp_path / "o", progress=False), make_device(4e12, 0.5, step_floor=0))
    assert slow["flops"] == fast["flops"] > 0
    assert slow["hours"] == pytest.approx(4 * fast["hours"])
    assert {d["stage"] for d in slow["detail"]} == {"train", "evaluate"}
    # a tiny model's 3 steps take the step floor, whatever the FLOP/s
    _, floor = dry_run(Runner(cfg, tmp_path / "o", progress=False), make_device(1e12, 0.5, step_floor=1.0))
    train = next(d for d in floor["detail"] if d["stage"] == "train")
    assert train["seconds"] == pytest.approx(3.0)


def test_dry_run_bad_numbers_and_flags_without_it_are_one_line_errors(glue_dir, tiny_bert, tmp_path):
    base = ["--preset", "quick", "--task", "sst2", "--methods", "random", "--data-dir", str(glue_dir),
            "--learners", tiny_bert, "--out", str(tmp_path / "o")]
    for extra, words in ((["--dry-run", "--utilisation", "1.5"], "--utilisation"),
                         (["--dry-run", "--device-flops", "-1"], "--device-flops"),
                         (["--dry-run", "--step-floor", "-1"], "--step-floor"),
                         (["--device-flops", "1e12"], "go with --dry-run")):
        res = CliRunner().invoke(main, ["run", *base, *extra])
        assert res.exit_code != 0 and words in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o").exists()


def test_dilm_estimates_its_stages_and_the_vanilla_ablation_skips_matching():
    from dilmbench.cost import CostContext
    from dilmbench.registry import METHODS
    from dilmbench.tasks import get_task

    cctx = CostContext(task=get_task("mnli"), pool_lengths=np.full(100, 40.0), eval_lengths=np.full(100, 40.0),
                       eval_size=9815, pool_size=390_000, device="cuda", encoder="bert-base-uncased")
    dilm = METHODS.get("dilm").for_preset("paper").estimate_cost(cctx, 20)
    vanilla = METHODS.get("dilm_vanilla").for_preset("paper").estimate_cost(cctx, 20)
    names = [s.name.split(":")[0] for s in dilm]
    assert names == ["stage 1", "stage 2", "stage 3"] and [s.name.split(":")[0] for s in vanilla] == ["stage 1", "stage 3"]
    assert [s.per for s in dilm] == ["task", "task", "set"]
    # stage 3 writes DPC x 100 samples per class: twice the DPC, twice its cost; "max" (an untrained generator runs
    # to the reference's 421 tokens) costs more than texts as long as the data's
    s10 = METHODS.get("dilm").for_preset("paper").estimate_cost(cctx, 10)[2].flops
    assert dilm[2].flops == pytest.approx(2 * s10)
    cctx.generation = "max"
    assert METHODS.get("dilm").for_preset("paper").estimate_cost(cctx, 10)[2].flops > 5 * s10


def test_icl_estimate_warns_of_a_prompt_longer_than_the_context():
    from dilmbench.cost import CostContext
    from dilmbench.registry import EVALUATORS
    from dilmbench.tasks import get_task

    icl = EVALUATORS.get("icl").for_preset("paper")
    cctx = CostContext(task=get_task("mnli"), pool_lengths=np.full(100, 45.0), eval_lengths=np.full(100, 45.0),
                       eval_size=100, pool_size=1000, device="cuda")
    short = icl.estimate_cost(cctx, 3 * 5, "gpt2-xl")[0]
    long = icl.estimate_cost(cctx, 3 * 20, "gpt2-xl")[0]
    assert short.note == "" and "context 1024" in long.note
    assert "context" not in icl.estimate_cost(cctx, 3 * 20, "meta-llama/Llama-2-7b-hf")[0].note


def test_model_map_sends_an_id_to_a_local_folder_and_records_its_revision(tmp_path, tiny_bert, monkeypatch):
    from dilmbench.models import load_tokenizer, resolve_model
    from dilmbench.provenance import model_revision

    mp = tmp_path / "map.json"
    mp.write_text(json.dumps({"org/fake-bert": tiny_bert}))
    monkeypatch.setenv("DILMBENCH_MODEL_MAP", str(mp))
    assert resolve_model("org/fake-bert") == tiny_bert and resolve_model("other") == "other"
    assert load_tokenizer("org/fake-bert")("good film")["input_ids"]
    assert model_revision("org/fake-bert").startswith("local:")
    assert model_shape("org/fake-bert").width == 32  # the dry run reads the stand-in's own config


@pytest.mark.parametrize("content, words", [(None, "does not exist"), ("{not json", "not valid JSON"),
                                            ('["a"]', "one mapping"), ('{"a": "/no/such/dir"}', "not a folder")])
def test_a_bad_model_map_is_a_one_line_error(tmp_path, monkeypatch, content, words):
    from dilmbench.models import resolve_model

    mp = tmp_path / "map.json"
    if content is not None:
        mp.write_text(content)
    monkeypatch.setenv("DILMBENCH_MODEL_MAP", str(mp))
    with pytest.raises(DilmbenchError, match=words):
        resolve_model("a")
