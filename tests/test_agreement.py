"""Agreement measures used on held-back queries."""

from __future__ import annotations

from llmr.data.schema import CandidateList
from llmr.training.agreement import agreement, kept_above_penalized


def cands(scores: list[float]) -> CandidateList:
    ids = [f"d{i}" for i in range(len(scores))]
    return CandidateList(
        query_id="q", query="x", answers=["Positive"], options=[""], task_name="sst2", doc_ids=ids, doc_scores=scores
    )


def test_kept_above_penalized_counts_only_kept_vs_penalized_pairs() -> None:
    ref = [cands([-1.0, -100.0, -2.0, -100.0])]
    assert kept_above_penalized(ref, {"q": [0.9, 0.1, 0.5, 0.2]}) == 1.0
    assert kept_above_penalized(ref, {"q": [0.1, 0.9, 0.5, 0.2]}) == 0.25  # only 0.5 > 0.2 of the 4 pairs
    assert kept_above_penalized([cands([-1.0, -2.0])], {"q": [0.0, 1.0]}) is None  # nothing penalized
    assert agreement(ref, {"q": [0.1, 0.9, 0.5, 0.2]}) == 0.0  # the kept pair is ordered wrongly
