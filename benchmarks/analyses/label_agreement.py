"""How often a text set's labels agree with an independent judge (the set cards' judge, dilmbench.cards): a TF-IDF +
logistic-regression sentiment classifier trained on the quick preset's SST-2 pool (train minus the dev split) and checked on the dev split. Real texts keep
their gold labels, so a real set's agreement is about the judge's accuracy; a generated set's agreement below that
says how many of its texts do not read as their label's class. Also printed: the mean number of words per text (what
a learner run costs grows with it). Nothing here touches the evaluation split.

Usage: python benchmarks/analyses/label_agreement.py RESULTS_DIR [METHOD ...]   (e.g. results/quick-sst2 dilm random)
"""
import sys
from pathlib import Path

import numpy as np

from dilmbench.cards import judge_for
from dilmbench.config import build_config
from dilmbench.tasks import TASKS, load_task_data
from dilmbench.textset import load_textset

out = Path(sys.argv[1])
cfg = build_config("quick")
task = TASKS["sst2"]
data = load_task_data(task, cfg["data_source"], cfg["dev_size"], cfg["dev_seed"])
first = lambda texts: [t[0] if isinstance(t, (tuple, list)) else t for t in texts]
judge, dev_acc = judge_for(data)  # the card's judge (dilmbench.cards)
print(f"judge: TF-IDF (1-2 grams) + logistic regression on {len(data.labels('pool'))} pool texts; "
      f"accuracy on the {len(data.labels('dev'))} dev texts {100 * dev_acc:.1f}%")
print("agreement of each set's labels with the judge, mean ± std over sets (n sets, mean words per text), per DPC")
root = out / "sets" / task.name
methods = sys.argv[2:] or sorted(p.name for p in root.iterdir() if p.is_dir())
for m in methods:
    cells = []
    for d in sorted((root / m).glob("dpc*"), key=lambda p: int(p.name[3:])):
        agree, words = [], []
        for f in sorted(d.glob("set*.jsonl")):
            ts = load_textset(f, task)
            agree.append(100 * (judge.predict(first(ts.texts)) == np.asarray(ts.labels)).mean())
            words.extend(len(t.split()) for t in first(ts.texts))
        if agree:
            cells.append(f"DPC {d.name[3:]}: {np.mean(agree):5.1f} ± {np.std(agree):4.1f} (n={len(agree)}, "
                         f"{np.mean(words):4.1f} words)")
    print(f"  {m:<15} " + "   ".join(cells))
