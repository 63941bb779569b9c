"""Training groups from scored candidate lists: 1 positive + n negatives per query, rotating by epoch.

The paper: the positive is sampled from the LLM's top 3, the negatives from its bottom 16. The
reference code meant to rotate the group every epoch but never did; here epoch e takes the
(e mod 3)-th positive and the next window of negatives, so every epoch shows a different group.
The authors' retriever loader also drops negatives of a classification query's task with its label
(likely false negatives): `drop_same_label_negatives`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from llmr.base.settings import check_bounds, setting
from llmr.data.schema import PENALTY, CandidateList, Passage, same_label
from llmr.tasks import TASKS


@dataclass(frozen=True)
class GroupConfig:
    top_k_positive: int = setting(3, "The positive: one of the teacher's top K (rotating by epoch).", ge=1)
    bottom_k_negative: int = setting(16, "Negatives come from the teacher's bottom K.", ge=1)
    n_negatives: int = setting(7, "Negatives per group.", ge=1)
    seed: int = setting(42, "Seed of the group sampling.")
    drop_same_label_negatives: bool = setting(
        False, "Drop negatives of a classification query's own task and label (kept when nothing else is left)."
    )

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class Group:
    query_id: str
    doc_ids: tuple[str, ...]  # the positive first, then the negatives
    scores: tuple[float, ...]  # their LLM (or teacher) scores, same order


def usable(cands: CandidateList, config: GroupConfig) -> bool:
    """Held-out tasks never train; a query needs a real (not penalized) positive and at least one negative."""
    task = TASKS.get(cands.task_name)
    if task is not None and task.held_out:
        return False
    if len(cands.doc_ids) <= config.top_k_positive:
        return False
    return sorted(cands.doc_scores, reverse=True)[config.top_k_positive - 1] > PENALTY


def group_for_epoch(
    cands: CandidateList, epoch: int, config: GroupConfig, passages: Mapping[str, Passage] | None = None
) -> Group:
    order = sorted(range(len(cands.doc_ids)), key=lambda i: -cands.doc_scores[i])
    positives = order[: config.top_k_positive]
    negatives = [i for i in order[-config.bottom_k_negative :] if i not in positives]
    if config.drop_same_label_negatives:
        if passages is None:
            raise ValueError("drop_same_label_negatives needs the pool (passages)")
        other = [i for i in negatives if not same_label(cands, passages[cands.doc_ids[i]])]
        negatives = other or negatives
    # A per-query shuffle, fixed across epochs, then a window that moves with the epoch.
    rng = random.Random(f"{config.seed}:{cands.query_id}")
    rng.shuffle(positives)
    rng.shuffle(negatives)
    pos = positives[epoch % len(positives)]
    start = epoch * config.n_negatives
    chosen = [negatives[(start + j) % len(negatives)] for j in range(config.n_negatives)]  # cycles if few
    picked = [pos, *chosen]
    return Group(cands.query_id, tuple(cands.doc_ids[i] for i in picked), tuple(cands.doc_scores[i] for i in picked))


def training_groups(
    candidates: Iterable[CandidateList],
    epochs: int,
    config: GroupConfig,
    passages: Mapping[str, Passage] | None = None,
) -> Iterator[tuple[CandidateList, Group]]:
    """(candidate list, its group) per usable list per epoch (epoch-major order). A query may appear in
    several lists (the union of two iterations' teacher data): each list gives its own groups."""
    kept = [c for c in candidates if usable(c, config)]
    for epoch in range(epochs):
        for cands in kept:
            yield cands, group_for_epoch(cands, epoch, config, passages)
