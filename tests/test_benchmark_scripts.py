"""The benchmark scripts' own helpers that no other test reaches (a refactor once left one calling a name it no
longer defined, and nothing ran it until a rehearsal on a device)."""
from conftest import load_script


def test_rehearsal_estimate_plans_a_step_command(glue_dir, tiny_bert, tmp_path):
    rehearsal = load_script("benchmarks/speed/paper_rehearsal.py")
    args = ["--preset", "quick", "--task", "sst2", "--methods", "random", "--dpc", "2", "--sets", "2", "--inits", "1",
            "--learners", tiny_bert, "--encoder", tiny_bert, "--steps", "3", "--data-dir", str(glue_dir),
            "--out", str(tmp_path / "none")]
    info = rehearsal.estimate(args, {}, "cpu", 1e12)
    runs = [d for d in info["detail"] if d["per"] == "run"]
    assert sorted((d["stage"], d["set_index"]) for d in runs) == [("evaluate", 0), ("evaluate", 1),
                                                                     ("train", 0), ("train", 1)]
    assert all(d["flops"] > 0 and d["learner"] == tiny_bert for d in runs)
    assert not (tmp_path / "none").exists()  # a dry run writes nothing
