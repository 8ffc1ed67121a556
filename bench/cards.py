"""A text set's card: what a reader checks before trusting a row.

- ``label_agreement``: the share of the set's examples whose label an independent judge agrees with. The judge is
  TF-IDF (word 1-2 grams) + logistic regression trained on the task's pool (train minus dev) and scored on the dev
  split (``judge_dev_accuracy``), so a real set's agreement is about the judge's accuracy and a generated set's
  agreement below it says how many of its texts do not read as their class. Pairs are judged on their fields joined.
- ``memorised``: the share of examples that appear verbatim (all fields, whitespace-stripped) in the train split.
- ``mean_words``: mean whitespace words per example (all fields).
- ``distinct_2``: distinct word bigrams / all word bigrams over the set (lower-cased; 1.0 = no bigram repeats).
- ``eval_overlap`` and ``near_copies_of_eval`` (card version 2): contamination, as CondenseLM's decontamination check
  measures it (its Appendix A.1, after Ubani et al. 2023 and Lee et al. 2024): each example's content words
  (lower-cased, punctuation and English stop words removed, all fields), the share of them found in the most similar
  example of the evaluation split; ``eval_overlap`` is the mean of that share over the set, ``near_copies_of_eval``
  the share of examples at or above ``NEAR_COPY`` (0.8).

Only the contamination check reads the evaluation split, to report on it; nothing is chosen with it.
"""
from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np

from .textset import TextSet

CARD_VERSION = 2  # 2: contamination (eval_overlap, near_copies_of_eval)
NEAR_COPY = 0.8
_JUDGES: dict = {}


def _joined(texts) -> list[str]:
    return [" || ".join(t) if isinstance(t, (tuple, list)) else t for t in texts]


def _data_key(data) -> str:
    prov = {k: v for k, v in data.provenance().items() if k != "source"}
    return hashlib.sha256(repr(sorted(prov.items())).encode()).hexdigest()[:16]


def fit_judge(data):
    """The independent judge for a task's data -> (pipeline, accuracy on the dev split or None)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    judge = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                          LogisticRegression(C=10, max_iter=2000))
    judge.fit(_joined(data.texts("pool")), data.labels("pool"))
    dev_acc = None
    if len(data.labels("dev")):
        dev_acc = float((judge.predict(_joined(data.texts("dev"))) == data.labels("dev")).mean())
    return judge, dev_acc


def judge_for(data, cache_dir: Path | None = None):
    """The judge for this data, fitted once per process and kept on disk under ``cache_dir`` (keyed by the data's
    identity), since fitting on a large pool takes a while."""
    key = _data_key(data)
    if key in _JUDGES:
        return _JUDGES[key]
    path = Path(cache_dir) / "judges" / f"{data.task.name}-{key}.joblib" if cache_dir else None
    if path is not None and path.is_file():
        import joblib

        try:
            _JUDGES[key] = joblib.load(path)
            return _JUDGES[key]
        except Exception:  # a truncated or foreign file: fit again
            pass
    _JUDGES[key] = fit_judge(data)
    if path is not None:
        import joblib

        path.parent.mkdir(parents=True, exist_ok=True)
        # a name of this process's own: two processes fitting the same judge (two runs on one --out) each write
        # their own file and replace; a shared ".partial" name let one move the other's file away first
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
        joblib.dump(_JUDGES[key], tmp)
        tmp.replace(path)
    return _JUDGES[key]


def distinct_n(texts: list[str], n: int = 2) -> float:
    grams, total = set(), 0
    for t in texts:
        words = t.lower().split()
        for i in range(len(words) - n + 1):
            grams.add(tuple(words[i:i + n]))
            total += 1
    return len(grams) / total if total else 0.0


_TRAIN: dict = {}


def train_texts(data) -> set:
    """Every train example (pool and dev), as stripped field tuples, for the memorisation check."""
    key = _data_key(data)
    if key not in _TRAIN:
        _TRAIN[key] = {tuple(s.strip() for s in t) for split in ("pool", "dev") for t in data.texts(split)}
    return _TRAIN[key]


def content_words(text: str) -> set:
    import re

    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return {w for w in re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower()) if w not in ENGLISH_STOP_WORDS}


_EVAL_INDEX: dict = {}


def _eval_index(data):
    """Content-word -> evaluation rows, for the task's scored split (cached per data)."""
    key = _data_key(data)
    if key not in _EVAL_INDEX:
        index: dict = {}
        for i, t in enumerate(data.texts("eval")):
            for w in content_words(" ".join(t)):
                index.setdefault(w, []).append(i)
        _EVAL_INDEX[key] = (index, len(data.texts("eval")))
    return _EVAL_INDEX[key]


def max_overlap(words: set, index: dict, n_eval: int) -> float:
    """The largest share of ``words`` that one evaluation example holds (0 for an example without content words)."""
    if not words or not n_eval:
        return 0.0
    counts = np.zeros(n_eval, dtype=np.int64)
    for w in words:
        rows = index.get(w)
        if rows:
            np.add.at(counts, rows, 1)
    return float(counts.max()) / len(words)


def contamination(ts: TextSet, data) -> dict:
    index, n_eval = _eval_index(data)
    scores = np.array([max_overlap(content_words(" ".join(t)), index, n_eval) for t in ts.texts])
    return {"eval_overlap": float(scores.mean()) if len(scores) else 0.0,
            "near_copies_of_eval": float((scores >= NEAR_COPY).mean()) if len(scores) else 0.0}


def set_card(ts: TextSet, data, cache_dir: Path | None = None) -> dict:
    judge, dev_acc = judge_for(data, cache_dir)
    labels = np.asarray(ts.labels)
    agree = float((judge.predict(_joined(ts.texts)) == labels).mean())
    train = train_texts(data)
    memorised = float(np.mean([tuple(s.strip() for s in t) in train for t in ts.texts]))
    joined = [" ".join(t) for t in ts.texts]
    return {"card_version": CARD_VERSION, "label_agreement": agree, "judge_dev_accuracy": dev_acc,
            "judge": "tfidf-1-2gram+logreg on the pool", "memorised": memorised,
            "mean_words": float(np.mean([len(t.split()) for t in joined])), "distinct_2": distinct_n(joined, 2),
            **contamination(ts, data)}
