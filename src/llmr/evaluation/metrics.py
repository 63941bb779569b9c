"""Per-example metrics, per-task aggregation, and paired bootstrap intervals.

- accuracy: the predicted label word / option letter equals the gold one;
- em_f1: SQuAD-normalised exact match (the headline number) and token F1, max over references;
- rouge_l: ROUGE-L F-measure (`rouge-score`, stemmed), max over references;
- f1 (multirc): binary F1 of the positive label over all of a task's examples (a corpus metric).
One class per metric (`metric_for(task)`); evaluation, reports and the bootstrap all go through it.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from functools import lru_cache

import numpy as np

from llmr.tasks import TASKS, Task

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    return float(any(normalize_answer(prediction) == normalize_answer(r) for r in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    def f1(pred: str, ref: str) -> float:
        p, r = normalize_answer(pred).split(), normalize_answer(ref).split()
        if not p or not r:
            return float(p == r)
        common = sum((Counter(p) & Counter(r)).values())
        if common == 0:
            return 0.0
        precision, recall = common / len(p), common / len(r)
        return 2 * precision * recall / (precision + recall)

    return max(f1(prediction, r) for r in references)


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(prediction: str, references: Sequence[str]) -> float:
    return max(_rouge().score(r, prediction)["rougeL"].fmeasure for r in references)


def binary_f1(predictions: Sequence[str], golds: Sequence[str], positive: str) -> float:
    tp = sum(p == positive and g == positive for p, g in zip(predictions, golds, strict=True))
    fp = sum(p == positive and g != positive for p, g in zip(predictions, golds, strict=True))
    fn = sum(p != positive and g == positive for p, g in zip(predictions, golds, strict=True))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


class Metric:
    """One task metric: each example's scores, and the task's number in [0, 100] from its outcomes
    (each has prediction, gold, score)."""

    name: str
    graded = False  # per-example scores between 0 and 1 (else each example is right or wrong)
    corpus = False  # the task's number is not the mean of per-example scores (bootstrap recomputes it)

    def example(self, prediction: str, references: Sequence[str]) -> dict[str, float]:
        """Every per-example number; "score" is the one the task's mean is taken over."""
        return {"score": float(prediction.strip() == references[0])}

    def task(self, outcomes: Sequence[Mapping]) -> float:
        return 100 * float(np.mean([o["score"] for o in outcomes])) if outcomes else float("nan")


class Accuracy(Metric):
    name = "accuracy"


class ExactMatchF1(Metric):
    name = "em_f1"

    def example(self, prediction: str, references: Sequence[str]) -> dict[str, float]:
        em = exact_match(prediction, references)
        return {"score": em, "em": em, "f1": token_f1(prediction, references)}


class RougeL(Metric):
    name = "rouge_l"
    graded = True

    def example(self, prediction: str, references: Sequence[str]) -> dict[str, float]:
        return {"score": rouge_l(prediction, references)}


class BinaryF1(Metric):
    """F1 of the positive label over all of a task's examples; per example: correct or not."""

    name = "f1"
    corpus = True

    def __init__(self, positive: str) -> None:
        self.positive = positive

    def task(self, outcomes: Sequence[Mapping]) -> float:
        if not outcomes:
            return float("nan")
        return 100 * binary_f1([o["prediction"] for o in outcomes], [o["gold"] for o in outcomes], self.positive)


def metric_for(task: Task) -> Metric:
    if task.metric == "f1":
        return BinaryF1(positive=task.label_words[-1])  # multirc: "Yes", the response is correct
    return {"accuracy": Accuracy, "em_f1": ExactMatchF1, "rouge_l": RougeL}[task.metric]()


def example_scores(task: Task, prediction: str, references: Sequence[str]) -> dict[str, float]:
    return metric_for(task).example(prediction, references)


def task_score(task: Task, outcomes: Sequence[Mapping]) -> float:
    return metric_for(task).task(outcomes)


def summarize(per_task: Mapping[str, float], held_out: Collection[str] = ()) -> dict[str, float]:
    """Category means, means per task mode (cls, mc, gen), the overall mean (over tasks) and the
    held-out tasks' mean (the paper's, and `held_out`: a leave-tasks-out study's unseen tasks)."""
    by_category: dict[str, list[float]] = {}
    by_mode: dict[str, list[float]] = {}
    for name, value in per_task.items():
        by_category.setdefault(TASKS[name].category, []).append(value)
        by_mode.setdefault(TASKS[name].mode, []).append(value)
    out = {f"category/{c}": float(np.mean(v)) for c, v in by_category.items()}
    out |= {f"mode/{m}": float(np.mean(v)) for m, v in by_mode.items()}
    out["average"] = float(np.mean(list(per_task.values()))) if per_task else float("nan")
    held = [v for n, v in per_task.items() if TASKS[n].held_out or n in held_out]
    if held:
        out["held_out_average"] = float(np.mean(held))
    return out


def paired_bootstrap(
    a: Mapping[str, Sequence[Mapping]],
    b: Mapping[str, Sequence[Mapping]],
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, float]:
    """CI of average(a) - average(b) over tasks, resampling each task's queries (the same ones for both).

    `a[task]` and `b[task]` hold outcomes for the same queries in the same order.
    """
    rng = np.random.default_rng(seed)
    names = sorted(a)
    for n in names:
        if len(a[n]) != len(b[n]):
            raise ValueError(f"task {n}: the two methods were scored on different queries")

    def resampled(name: str, idx: np.ndarray) -> float:
        metric = metric_for(TASKS[name])
        if not metric.corpus:  # a mean of per-example scores: index arrays directly
            return 100 * float(scores_a[name][idx].mean() - scores_b[name][idx].mean())
        return metric.task([a[name][j] for j in idx]) - metric.task([b[name][j] for j in idx])

    scores_a = {n: np.array([o["score"] for o in a[n]], dtype=float) for n in names}
    scores_b = {n: np.array([o["score"] for o in b[n]], dtype=float) for n in names}
    observed = np.mean([resampled(n, np.arange(len(a[n]))) for n in names])
    diffs = np.array(
        [np.mean([resampled(n, rng.integers(0, len(a[n]), len(a[n]))) for n in names]) for _ in range(n_resamples)]
    )
    low, high = np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"difference": float(observed), "low": float(low), "high": float(high)}
