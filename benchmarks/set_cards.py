"""The cards of saved sets, read from their sidecars (``*.meta.json``), whether or not a run has evaluated them yet (sets
made with ``dilmbench run --sets-only``): one line per set, then mean ± std (ddof 0) per DPC. For a generated set the
line adds, per class, the samples drawn and how many decoded (DiLM's acceptance rate).

Usage: python benchmarks/set_cards.py SETS_DIR   (e.g. results/quick-mnli/sets/mnli/dilm)
"""
import json
import sys
from pathlib import Path

import numpy as np

FIELDS = (("label_agreement", "judge agrees %", 100), ("memorised", "memorised %", 100),
          ("mean_words", "words", 1), ("distinct_2", "distinct-2 %", 100))


def main(root: Path) -> int:
    metas = sorted(root.glob("dpc*/set*.meta.json"), key=lambda p: (int(p.parent.name[3:]), p.name))
    if not metas:
        print(f"error: no set sidecars (dpc*/set*.meta.json) under {root}", file=sys.stderr)
        return 2
    by_dpc: dict[int, list[dict]] = {}
    for p in metas:
        meta = json.loads(p.read_text())
        card = meta.get("card") or {}
        dpc = int(p.parent.name[3:])
        by_dpc.setdefault(dpc, []).append(card)
        line = "  ".join(f"{label} {card[k] * scale:.1f}" for k, label, scale in FIELDS if k in card)
        sampling = meta.get("provenance", {}).get("sampling")
        if sampling:
            line += "  usable/drawn " + ", ".join(f"{c} {s['usable']}/{s['drawn']}" for c, s in sampling.items())
        print(f"DPC {dpc} {p.name.split('.')[0]}: {line}")
    judge = next((c.get("judge_dev_accuracy") for cards in by_dpc.values() for c in cards if c), None)
    for dpc, cards in sorted(by_dpc.items()):
        parts = []
        for k, label, scale in FIELDS:
            vals = np.array([c[k] for c in cards if k in c], dtype=float) * scale
            if len(vals):
                parts.append(f"{label} {vals.mean():.1f} ± {vals.std():.1f}")
        print(f"DPC {dpc}, {len(cards)} sets: " + "; ".join(parts))
    if judge is not None:
        print(f"(the judge's own accuracy on the dev split: {100 * judge:.1f}%)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1])))
