"""Reward-model training groups: positives from the top, negatives from the bottom, rotation per epoch."""

from llmr.data.schema import PENALTY, CandidateList
from llmr.training.groups import GroupConfig, group_for_epoch, training_groups, usable


def _cands(scores: list[float], task: str = "sst2", qid: str = "q") -> CandidateList:
    return CandidateList(
        query_id=qid,
        query="x",
        answers=["Yes" if task == "qnli" else "Positive"],
        task_name=task,
        doc_ids=[f"d{i}" for i in range(len(scores))],
        doc_scores=scores,
    )


SCORES = [-float(i) for i in range(20)]  # d0 best ... d19 worst


def test_positive_from_top3_negatives_from_bottom16() -> None:
    config = GroupConfig()
    group = group_for_epoch(_cands(SCORES), 0, config)
    assert len(group.doc_ids) == 8
    assert group.doc_ids[0] in {"d0", "d1", "d2"}
    assert all(int(d[1:]) >= 4 for d in group.doc_ids[1:])  # bottom 16 of 20 = d4..d19
    assert group.scores[0] == max(group.scores)


def test_groups_rotate_across_epochs() -> None:
    config = GroupConfig()
    groups = [group_for_epoch(_cands(SCORES), e, config) for e in range(3)]
    assert len({g.doc_ids[0] for g in groups}) == 3  # each of the top 3 is the positive once
    assert set(groups[0].doc_ids[1:]).isdisjoint(groups[1].doc_ids[1:])  # 16 negatives: two disjoint windows
    assert group_for_epoch(_cands(SCORES), 3, config).doc_ids[0] == groups[0].doc_ids[0]  # positives cycle
    assert group_for_epoch(_cands(SCORES), 1, config) == groups[1]  # deterministic


def test_unusable_queries_are_dropped() -> None:
    config = GroupConfig()
    assert usable(_cands(SCORES), config)
    assert not usable(_cands(SCORES, task="qnli"), config)  # held out
    assert not usable(_cands([0.0, PENALTY, PENALTY, PENALTY]), config)  # third best is a penalty
    assert not usable(_cands([0.0, -1.0, -2.0]), config)  # no negative left
    groups = list(training_groups([_cands(SCORES, qid="a"), _cands(SCORES, task="yelp", qid="b")], 2, config))
    assert [g.query_id for _, g in groups] == ["a", "a"]


def test_same_label_negatives_are_dropped_for_classification() -> None:
    from llmr.data.schema import Passage

    labels = ["Positive"] * 3 + ["Positive", "Negative"] * 4  # d0..d2 positives; then alternating
    pool = {
        f"d{i}": Passage(id=f"d{i}", contents=f"text {i}\n{label}", task_name="sst2") for i, label in enumerate(labels)
    }
    cands = _cands([-float(i) for i in range(len(labels))])
    config = GroupConfig(n_negatives=3, drop_same_label_negatives=True)
    for epoch in range(3):
        group = group_for_epoch(cands, epoch, config, pool)
        assert all(pool[d].contents.endswith("Negative") for d in group.doc_ids[1:])
    kept = group_for_epoch(cands, 0, GroupConfig(n_negatives=8), pool)
    assert any(pool[d].contents.endswith("Positive") for d in kept.doc_ids[1:])  # without the filter they stay
    # A multiple-choice query has no label to match: nothing is dropped.
    mc = cands.model_copy(update={"task_name": "copa"})
    pool_mc = {k: v.model_copy(update={"task_name": "copa"}) for k, v in pool.items()}
    assert (
        len(
            set(group_for_epoch(mc, 0, GroupConfig(n_negatives=8, drop_same_label_negatives=True), pool_mc).doc_ids[1:])
        )
        == 8
    )
