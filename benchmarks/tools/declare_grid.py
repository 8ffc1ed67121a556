"""Draft a grid.yaml for a results folder made before folders declared their grid, from what its results record.

Each entry spells out every option the results were made with (the method's and the evaluator's whole recorded
configuration, with the options added since at the value that behaves as before), so that
`dilmbench run --config FOLDER/grid.yaml --dry-run` finds every declared run done. A draft describes what is there,
not what was meant: read it, write the intent in `note:` lines, and check it with the dry run before committing.

Usage: python benchmarks/tools/declare_grid.py FOLDER [--description TEXT] [--write]
"""
import argparse
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from dilmbench.record import RunRecord
from dilmbench.registry import EVALUATORS, METHODS


def entries(folder: Path) -> list[dict]:
    groups = defaultdict(lambda: defaultdict(set))  # entry key -> dpc -> set indices / inits
    shapes = {}
    for path in sorted(folder.glob("runs*/**/*.json")):
        rec = RunRecord.read(path)
        if rec is None:
            continue
        cfg = rec.config
        ident = cfg["set_identity"]
        method_cls = METHODS.get(ident["method"]["method"])
        eval_cls = EVALUATORS.get(rec.evaluator)
        m_opts = {**getattr(method_cls, "later_defaults", {}), **ident["method"].get("config", {})}
        e_opts = {**getattr(eval_cls, "later_defaults", {}), **cfg.get("evaluator_config", {})}
        base = {"preset": cfg.get("preset", "quick"), "tasks": [rec.task], "methods": [rec.method]}
        if rec.scored_on.get("split", "eval") != "eval":
            base["score_on"] = rec.scored_on["split"]
        if "encoder" in ident:
            base["encoder"], base["pooling"] = ident["encoder"]["model"], ident["encoder"]["pooling"]
        base["embed_dtype"] = ident.get("encoder", {}).get("dtype", "float32")
        base["seed"] = ident.get("base_seed", 0)
        base["dev_size"] = ident["data"]["dev_size"]
        base["evaluator"] = rec.evaluator
        if m_opts:
            base["method_options"] = {rec.method: m_opts}
        base["evaluator_options"] = {rec.evaluator: {**e_opts, "learners": [rec.learner]}}
        key = yaml.safe_dump(base, sort_keys=True)
        shapes[key] = base
        groups[key][rec.dpc].add((rec.set_index, rec.init_index))
    out = []
    for key, by_dpc in groups.items():
        by_shape = defaultdict(list)  # (sets, inits) -> DPCs
        for dpc, runs in sorted(by_dpc.items()):
            by_shape[(1 + max(s for s, _ in runs), 1 + max(i for _, i in runs))].append(dpc)
        for (sets, inits), dpcs in sorted(by_shape.items()):
            out.append({**shapes[key], "dpc": dpcs, "sets": sets, "inits": inits})
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--description", default=None)
    ap.add_argument("--write", action="store_true", help="write FOLDER/grid.yaml (refused if it exists)")
    a = ap.parse_args()
    doc = {**({"description": a.description} if a.description else {}), "runs": entries(a.folder)}
    text = ("# Drafted by benchmarks/tools/declare_grid.py from what the results record, then checked with\n"
            f"# `dilmbench run --config {a.folder}/grid.yaml --dry-run` (every declared run done).\n"
            + yaml.safe_dump(doc, sort_keys=False, width=120))
    if a.write:
        if (a.folder / "grid.yaml").exists():
            sys.exit(f"{a.folder}/grid.yaml exists; not overwritten")
        (a.folder / "grid.yaml").write_text(text)
    print(text)
