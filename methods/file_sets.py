"""file: text sets made elsewhere (a folder of JSONL sets, or one file), evaluated under the same protocol."""
from pathlib import Path

from dilmbench.api import Method
from dilmbench.errors import DilmbenchError
from dilmbench.textset import load_textset


class FileSetsMethod(Method):
    """Evaluate published or hand-made sets: `--methods file:path/to/sets/` (a folder of .jsonl files, or one file)."""

    default_config = {"path": None}

    def fixed_sets(self, task):
        path = Path(self.config["path"] or "")
        if path.is_dir():
            files = sorted(path.glob("*.jsonl"))
            if not files:
                raise DilmbenchError(f"folder '{path}' holds no .jsonl text sets")
        elif path.is_file():
            files = [path]
        else:
            raise DilmbenchError(f"text set path '{path}' does not exist")
        sets = []
        for f in files:
            ts = load_textset(f, task)
            ts.provenance = {**ts.provenance, "file": str(f), "content_hash": ts.content_hash()}
            sets.append(ts)
        return sets
