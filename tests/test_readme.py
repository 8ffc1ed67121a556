"""The plugin examples of docs/plugins.md, as written there, run through the CLI; every link in the README and docs/
resolves."""
import json
import re
from pathlib import Path

from click.testing import CliRunner

from dilmbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PLUGINS = ROOT / "docs" / "plugins.md"


def readme_examples(doc: Path = PLUGINS) -> dict[str, str]:
    """Indented code blocks that start with '# <file>.py', keyed by that file name."""
    blocks, text = {}, doc.read_text()
    for m in re.finditer(r"(?m)^    # (\w+\.py)\n((?:^(?:    .*|)\n)+)", text):
        body = "\n".join(line[4:] for line in m.group(2).splitlines())
        blocks[m.group(1)] = body.rstrip() + "\n"
    return blocks


def test_the_readmes_plugin_examples_run(glue_dir, tiny_bert, tmp_path):
    blocks = readme_examples()
    assert {"my_method.py", "my_writer.py", "my_evaluator.py", "my_task.py"} <= set(blocks)
    paths = {}
    for name, code in blocks.items():
        paths[name] = tmp_path / name
        paths[name].write_text(code)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--plugin", str(paths["my_method.py"]), "--plugin",
                                    str(paths["my_writer.py"]), "--plugin", str(paths["my_evaluator.py"]),
                                    "--methods", "first_k,shortest", "--evaluator", "tfidf", "--data-dir",
                                    str(glue_dir), "--dev-size", "10", "--dpc", "3", "--out", str(out),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    for method in ("first_k", "shortest"):
        recs = [json.loads(p.read_text()) for p in (out / "runs" / "sst2" / method / "tfidf").rglob("*.json")]
        assert len(recs) == 1 and recs[0]["textset"]["class_counts"] == [3, 3] and 0 < recs[0]["score"] <= 1
    from dilmbench.tasks import TASKS, load_task_data

    data = load_task_data(TASKS["sst2"], str(glue_dir), dev_size=10)
    texts, labels = data.texts("pool"), data.labels("pool")
    expected = [texts[i][0] for c in (0, 1)
                for i in sorted((i for i in range(len(texts)) if labels[i] == c), key=lambda i: (len(texts[i][0]), i))[:3]]
    rows = (out / "sets" / "sst2" / "shortest" / "dpc3" / "set00.jsonl").read_text().splitlines()
    assert [json.loads(r)["sentence"] for r in rows] == expected


def test_the_task_example_runs(glue_dir, tiny_bert, tmp_path):
    (tmp_path / "my_task.py").write_text(readme_examples()["my_task.py"])
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--plugin", str(tmp_path / "my_task.py"), "--task",
                                    "sst2_balanced", "--methods", "random", "--learners", tiny_bert, "--steps", "2",
                                    "--data-dir", str(glue_dir), "--dev-size", "10", "--dpc", "3", "--out", str(out),
                                    "--no-progress"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(p.read_text()) for p in (out / "runs" / "sst2_balanced").rglob("*.json")]
    assert len(recs) == 1 and "balanced_accuracy" in recs[0]["metrics"]
    assert recs[0]["score"] == recs[0]["metrics"]["balanced_accuracy"]


def test_every_link_in_the_readme_and_docs_resolves():
    docs = [README, ROOT / "DEVELOPERS.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
    assert len(docs) >= 5
    broken = []
    for doc in docs:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target:
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_no_file_points_outside_the_repository():
    for doc in [README, ROOT / "DEVELOPERS.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text()
        assert "shared/" not in text and "OFFLINE.md" not in text, doc.name
