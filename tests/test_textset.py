import json

import pytest

from dilmbench.errors import DilmbenchError
from dilmbench.tasks import TASKS
from dilmbench.textset import TextSet, load_textset, meta_path, save_textset


def _pair_set():
    return TextSet(task="mnli", text_fields=("premise", "hypothesis"),
                   texts=[("a p", "a h"), ("b p", "b h"), ("c p", "c h")], labels=[0, 1, 2],
                   weights=[1.0, 0.5, 2.0], source_indices=[10, 11, 12], provenance={"method": "x", "seed": 3})


def test_roundtrip_and_datasets_reads_it(tmp_path):
    import datasets

    ts = _pair_set()
    path = tmp_path / "set00.jsonl"
    digest = save_textset(ts, path)
    back = load_textset(path, TASKS["mnli"])
    assert back.texts == ts.texts and back.labels == ts.labels and back.weights == ts.weights
    assert back.source_indices == [10, 11, 12] and back.provenance == {"method": "x", "seed": 3}
    assert back.content_hash() == digest == json.loads(meta_path(path).read_text())["content_hash"]
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    assert ds.column_names[:3] == ["premise", "hypothesis", "label"] and ds["label"] == [0, 1, 2]


def test_content_hash_changes_with_content():
    a, b = _pair_set(), _pair_set()
    b.labels[0] = 1
    assert a.content_hash() != b.content_hash()


def test_string_label_names_are_accepted(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"sentence": "good", "label": "positive"}\n{"sentence": "bad", "label": "negative"}\n')
    assert load_textset(p, TASKS["sst2"]).labels == [1, 0]


@pytest.mark.parametrize("body, message", [
    ('{"text": "x", "label": 0}\n{"sentence": "y", "label": 1}\n', "missing field"),
    ('{"sentence": "x", "label": 5}\n{"sentence": "y", "label": 1}\n', "not one of task sst2's labels"),
    ('{"sentence": "x", "label": 1}\n{"sentence": "y", "label": 1}\n', "no example of class"),
    ('{"sentence": "x", "label": 0}\n{"sentence": "y", "label": 1\n', "not valid JSON"),
    ("", "holds no examples"),
    ('{"sentence": "x", "label": 0, "weight": 1}\n{"sentence": "y", "label": 1}\n', "'weight' must be given"),
])
def test_malformed_sets_are_one_line_errors(tmp_path, body, message):
    p = tmp_path / "bad.jsonl"
    p.write_text(body)
    with pytest.raises(DilmbenchError, match=message) as exc:
        load_textset(p, TASKS["sst2"])
    assert "\n" not in str(exc.value)


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    import os
    import stat

    from dilmbench.textset import atomic_write_text

    atomic_write_text(tmp_path / "r.json", "{}")
    mode = stat.S_IMODE((tmp_path / "r.json").stat().st_mode)
    if not os.umask(os.umask(0)) & 0o004:  # under a umask that lets others read, results are readable by others
        assert mode & stat.S_IROTH, oct(mode)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_set_that_is_not_utf8_gets_one_line_naming_the_file(tmp_path, glue_dir, tiny_bert):
    from click.testing import CliRunner

    from dilmbench.cli import main

    sets = tmp_path / "sets"
    sets.mkdir()
    (sets / "set.jsonl").write_bytes(b'{"sentence": "fine", "label": 1}\n{"sentence": "\xff\xfe bad", "label": 0}\n')
    with pytest.raises(DilmbenchError, match=r"set\.jsonl:2: not UTF-8 text"):
        load_textset(sets / "set.jsonl", TASKS["sst2"])
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["run", "--preset", "quick", "--methods", f"file:{sets}", "--learners", tiny_bert,
                                    "--data-dir", str(glue_dir), "--dev-size", "10", "--steps", "2", "--no-progress",
                                    "--out", str(out)])
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, res.output
    assert "set.jsonl:2: not UTF-8 text" in lines[0] and "JSON Lines" in lines[0]
    assert not (out / "runs").exists()


def test_a_line_separator_inside_a_text_stays_in_its_line(tmp_path):
    path = tmp_path / "s.jsonl"
    rows = [{"sentence": "one\u2028two", "label": 1}, {"sentence": "three", "label": 0}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert load_textset(path, TASKS["sst2"]).texts == [("one\u2028two",), ("three",)]
