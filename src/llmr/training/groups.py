"""Training groups from scored candidate lists: 1 positive + n negatives per query, rotating by epoch.

The paper: the positive is sampled from the LLM's top 3, the negatives from its bottom 16. The
reference code meant to rotate the group every epoch but never did; here epoch e takes the
(e mod 3)-th positive and the next window of negatives, so every epoch shows a different group.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from llmr.data.schema import CandidateList
from llmr.scoring.feedback import PENALTY
from llmr.tasks import TASKS


@dataclass(frozen=True)
class GroupConfig:
    top_k_positive: int = 3
    bottom_k_negative: int = 16
    n_negatives: int = 7
    seed: int = 42


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


def group_for_epoch(cands: CandidateList, epoch: int, config: GroupConfig) -> Group:
    order = sorted(range(len(cands.doc_ids)), key=lambda i: -cands.doc_scores[i])
    positives = order[: config.top_k_positive]
    negatives = [i for i in order[-config.bottom_k_negative :] if i not in positives]
    # A per-query shuffle, fixed across epochs, then a window that moves with the epoch.
    rng = random.Random(f"{config.seed}:{cands.query_id}")
    rng.shuffle(positives)
    rng.shuffle(negatives)
    pos = positives[epoch % len(positives)]
    start = epoch * config.n_negatives
    chosen = [negatives[(start + j) % len(negatives)] for j in range(config.n_negatives)]  # cycles if few
    picked = [pos, *chosen]
    return Group(cands.query_id, tuple(cands.doc_ids[i] for i in picked), tuple(cands.doc_scores[i] for i in picked))


def training_groups(candidates: Iterable[CandidateList], epochs: int, config: GroupConfig) -> Iterator[Group]:
    """One group per usable query per epoch (epoch-major order)."""
    kept = [c for c in candidates if usable(c, config)]
    for epoch in range(epochs):
        for cands in kept:
            yield group_for_epoch(cands, epoch, config)
