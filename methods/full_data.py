"""full: the whole training pool as one set, the ceiling every few-text set is measured against.

DiLM's Table 1 reports each learner fine-tuned on the full dataset (BERT-base on SST-2: 92.7). Here that learner is
trained on the task's pool (train less the dev split) under the same recipe as every set, so the row is the full
data's value under the same budget, not a model trained to convergence: with the reference protocol's 200 steps at
batch 64 a learner sees 12,800 of SST-2's 65,349 pool texts once. The table shows it as the ceiling in every DPC
column of its learner, and `dilmbench table --dd-ranking` sets each method against it (DD-Ranking's hard-label
recovery, HLR = full − method) and against random (improvement over random, IOR = method − random).
"""
from dilmbench.api import Method
from dilmbench.textset import TextSet


class FullDataMethod(Method):
    """The whole training pool as one set: the full-data ceiling, under the same fine-tuning recipe."""

    gives_sets = True  # one set per task, whatever the grid's DPC
    fixed_dpc = 0  # its runs are filed under dpc0 ("all"), whatever the grid's DPC
    ceiling = True  # tables show it as every DPC's ceiling of its learner, not as a DPC of its own

    def fixed_sets(self, task, data=None):
        if data is None:
            return None
        ts = TextSet(task=task.name, text_fields=task.text_fields, texts=list(data.texts("pool")),
                     labels=data.labels("pool").tolist(), source_indices=list(range(len(data.pool))))
        ts.provenance = {**ts.provenance, "full_pool": True, "rows": len(ts)}
        return [ts]

    def describe_sets(self, sets) -> str:
        return f"the whole pool as one set ({len(sets[0]):,} texts)"
