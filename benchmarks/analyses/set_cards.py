"""The cards of saved sets, read from their sidecars (``*.meta.json``), whether or not a run has evaluated them yet (sets
made with ``dilmbench run --sets-only``): one line per set, then mean ± std (ddof 0) per DPC. For a generated set the
line adds, per class, the samples drawn and how many decoded (DiLM's acceptance rate). The summary is the table of
`dilmbench table --cards` (bench/tables.py), made from the sidecars instead of from results.

Usage: python benchmarks/analyses/set_cards.py SETS_DIR   (e.g. results/quick-mnli/sets/mnli/dilm)
"""
import json
import sys
from pathlib import Path

import pandas as pd

from dilmbench.tables import CARD_COLUMNS, CARD_SCALE, build_cards_table


def main(root: Path) -> int:
    metas = sorted(root.glob("dpc*/set*.meta.json"), key=lambda p: (int(p.parent.name[3:]), p.name))
    if not metas:
        print(f"error: no set sidecars (dpc*/set*.meta.json) under {root}", file=sys.stderr)
        return 2
    rows, judge = [], None
    for p in metas:
        meta = json.loads(p.read_text())
        card = meta.get("card")
        dpc = int(p.parent.name[3:])
        if card is None:
            print(f"DPC {dpc} {p.name.split('.')[0]}: no card")
            continue
        judge = card.get("judge_dev_accuracy", judge)
        rows.append({"task": meta.get("task", root.parent.name), "method": root.name, "dpc": dpc,
                     **{k: card[k] for k in CARD_COLUMNS}})
        line = "  ".join(f"{name} {card[k] * CARD_SCALE[k]:.1f}" for k, name in CARD_COLUMNS.items())
        sampling = meta.get("provenance", {}).get("sampling")
        if sampling:
            line += "  usable/drawn " + ", ".join(f"{c} {s['usable']}/{s['drawn']}" for c, s in sampling.items())
        print(f"DPC {dpc} {p.name.split('.')[0]}: {line}")
    if rows:
        print(build_cards_table(pd.DataFrame(rows)).to_markdown())
    if judge is not None:
        print(f"(the judge's own accuracy on the dev split: {100 * judge:.1f}%)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
