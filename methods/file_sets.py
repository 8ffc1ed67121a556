"""file: text sets made elsewhere, evaluated under the same protocol.

Reads a folder of JSON Lines sets (``*.jsonl``; each line the task's text fields and ``label``), or one such file, or a
folder as DiLM's authors release their distilled sets (``dataset_<i>.json``, JSON Lines with the task's fields and
``labels``), as it is.
"""
import re
from pathlib import Path

from dilmbench.api import Method
from dilmbench.errors import DilmbenchError
from dilmbench.textset import load_textset


def _release_index(path: Path) -> int:
    return int(re.fullmatch(r"dataset_(\d+)\.json", path.name).group(1))


class FileSetsMethod(Method):
    """Evaluate published or hand-made sets: `--methods file:path/to/sets/` (*.jsonl, or DiLM's dataset_<i>.json)."""

    # sets whose classes differ in size are refused unless asked for (the table's DPC is then the largest class);
    # a set's seeds come from its content ("content"), so a renamed folder or a reordered file list scores the same;
    # "name" is how they were derived before (folder name, file index), for results made then
    default_config = {"path": None, "allow_unequal": False, "seed_by": "content"}
    later_defaults = {"seed_by": "name"}
    argument = "path"  # --methods file:PATH
    gives_sets = True

    def __init__(self, **config):
        super().__init__(**config)
        if self.config["seed_by"] not in ("content", "name"):
            raise DilmbenchError(f"method 'file': seed_by must be 'content' or 'name', got '{self.config['seed_by']}'")
        if self.config["path"] is not None and not Path(self.config["path"]).exists():
            # said before any model or data is loaded
            raise DilmbenchError(f"text set path '{self.config['path']}' does not exist")

    def fixed_sets(self, task):
        path = Path(self.config["path"] or "")
        if path.is_dir():
            files = sorted(path.glob("*.jsonl"))
            fmt = "JSON Lines sets (*.jsonl)"
            if not files:
                files = sorted((p for p in path.glob("dataset_*.json") if re.fullmatch(r"dataset_\d+\.json", p.name)),
                               key=_release_index)
                fmt = "DiLM's released sets (dataset_<i>.json, key 'labels')"
            if not files:
                raise DilmbenchError(f"folder '{path}' holds no text sets (*.jsonl, or DiLM's dataset_<i>.json)")
        elif path.is_file():
            files, fmt = [path], "one JSON Lines set"
        else:
            raise DilmbenchError(f"text set path '{path}' does not exist")
        sets, seen = [], {}
        for f in files:
            ts = load_textset(f, task)
            counts = ts.class_counts(task.num_labels)
            if len(set(counts)) > 1 and not self.config["allow_unequal"]:
                raise DilmbenchError(f"text set '{f}' has unequal classes {dict(zip(task.label_names, counts))}; a DPC "
                                     "set has the same number per class (to evaluate it anyway: method_options: "
                                     "{file: {allow_unequal: true}})")
            digest = ts.content_hash()
            if digest in seen and self.config["seed_by"] == "content":  # the same set twice would be the same runs
                raise DilmbenchError(f"text sets '{seen[digest]}' and '{f}' hold the same examples; keep one")
            seen[digest] = f
            ts.provenance = {**ts.provenance, "file": str(f), "format": fmt, "content_hash": digest}
            sets.append(ts)
        return sets

    def describe_sets(self, sets) -> str:
        sizes = sorted({len(ts) for ts in sets})
        return (f"read {len(sets)} set(s) from {self.config['path']} as {sets[0].provenance['format']}, "
                f"{'/'.join(map(str, sizes))} examples each")
