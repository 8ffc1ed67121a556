"""Write what `dilmbench validate` says of every results folder in this repository to its validate.txt (a folder is
one holding runs/ or runs-<split>/). tests/test_committed_results.py holds the files to what validate says now, so a
results folder never claims a state it is not in.

Usage: python benchmarks/tools/validate_committed.py [--check]
"""
import sys
from pathlib import Path

from dilmbench.validate import render_report, validate

ROOT = Path(__file__).resolve().parents[2] / "results"


def folders() -> list[Path]:
    return sorted({p.parent for p in ROOT.rglob("runs*") if p.is_dir() and p.parent != ROOT})


def said(folder: Path) -> str:
    return (f"# dilmbench validate {folder.relative_to(ROOT.parent)} (written by benchmarks/tools/validate_committed.py)\n"
            + render_report(validate(folder)) + "\n")


if __name__ == "__main__":
    stale = []
    for f in folders():
        text = said(f)
        if "--check" in sys.argv:
            if not (f / "validate.txt").is_file() or (f / "validate.txt").read_text() != text:
                stale.append(str(f))
        else:
            (f / "validate.txt").write_text(text)
        print(f"{f.relative_to(ROOT.parent)}: {text.splitlines()[1]}")
    if stale:
        sys.exit(f"validate.txt is stale in: {', '.join(stale)}")
