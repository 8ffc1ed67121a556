"""What a learner scores without learning anything: each class's share of the scored rows and the task's headline
score of always answering that class (QQP: the mean of accuracy and F1, so "always duplicate" is not "always
not-duplicate"). The level a results README compares a row with before calling it a result.

Usage: python benchmarks/analyses/chance_levels.py TASK DATA_DIR [--first N]   (--first: the rows a max_eval run scores)
"""
import argparse
import sys

import numpy as np

from dilmbench.errors import DilmbenchError
from dilmbench.tasks import get_task, load_split

p = argparse.ArgumentParser()
p.add_argument("task")
p.add_argument("data_dir")
p.add_argument("--first", type=int, default=None, help="score only the first N rows of the evaluation split")
a = p.parse_args()
if a.first is not None and a.first <= 0:
    sys.exit(f"error: --first must be a positive number of rows, got {a.first}")
try:
    task = get_task(a.task)
    labels = np.asarray(load_split(task, task.eval_split, a.data_dir)["label"], dtype=np.int64)
except DilmbenchError as e:
    sys.exit(f"error: {e}")
n_all = len(labels)
if a.first:
    labels = labels[: a.first]
print(f"{task.name} {task.eval_split}: {len(labels):,} of {n_all:,} rows scored; score: {task.score_words}")
for k, name in enumerate(task.label_names):
    s = task.score(labels, np.full_like(labels, k))["score"]
    print(f"  {name:<15} {100 * np.mean(labels == k):5.1f}% of rows; always answering it scores {100 * s:5.1f}")
