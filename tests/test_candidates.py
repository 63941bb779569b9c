"""Candidate mining with BM25: own item excluded, scopes, real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmr.candidates import BM25Retriever, mine_candidates
from llmr.data.build import BuildConfig, build
from llmr.data.directory import DataDir
from llmr.data.schema import Passage, Record
from llmr.data.sources import DirectorySource
from llmr.tasks import resolve_tasks


def _pool() -> list[Passage]:
    rows = [
        ("sst2_train_0", "Review: a great fun film\nPositive", "sst2"),
        ("sst2_train_1", "Review: a dull boring film\nNegative", "sst2"),
        ("sst2_train_2", "Review: great acting, fun story\nPositive", "sst2"),
        ("dup_of_0", "Review: a great fun film\nPositive", "sst2"),  # same contents as the query's own item
        ("ag_news_train_0", "News: a great fun film festival opens\nWorld", "ag_news"),
        ("ag_news_train_1", "News: stocks fall\nBusiness", "ag_news"),
    ]
    return [Passage(id=i, contents=c, task_name=t) for i, c, t in rows]


QUERY = Record(query_id="sst2_train_0", query="Review: a great fun film", answers=["Positive"], task_name="sst2")


def test_task_scope_excludes_own_item_and_other_tasks() -> None:
    pool = _pool()
    (cands,) = mine_candidates([QUERY], pool, BM25Retriever(pool), top_n=10, scope="task")
    assert "sst2_train_0" not in cands.doc_ids and "dup_of_0" not in cands.doc_ids
    assert set(cands.doc_ids) == {"sst2_train_1", "sst2_train_2"}
    assert cands.doc_scores == sorted(cands.doc_scores, reverse=True)
    assert cands.query_id == QUERY.query_id and cands.answers == ["Positive"]


def test_unified_scope_puts_same_task_first() -> None:
    pool = _pool()
    (cands,) = mine_candidates([QUERY], pool, BM25Retriever(pool), top_n=10, scope="unified")
    tasks = [next(p.task_name for p in pool if p.id == d) for d in cands.doc_ids]
    assert tasks == sorted(tasks, key=lambda t: t != "sst2")  # all sst2 before any ag_news
    assert "ag_news_train_0" in cands.doc_ids  # the lexically close item of another task is still there
    assert len(cands.doc_ids) == 4


def test_top_n_and_batches_keep_input_order() -> None:
    pool = _pool()
    other = QUERY.model_copy(
        update={"query_id": "q2", "query": "stocks fall today", "answers": ["Business"], "task_name": "ag_news"}
    )
    queries = [QUERY, other] * 3
    out = list(mine_candidates(queries, pool, BM25Retriever(pool), top_n=1, scope="unified", batch_size=2))
    assert [c.query_id for c in out] == [q.query_id for q in queries]
    assert all(len(c.doc_ids) == 1 for c in out)
    assert out[1].doc_ids == ["ag_news_train_1"]


def test_bad_scope() -> None:
    with pytest.raises(ValueError, match="scope"):
        list(mine_candidates([QUERY], _pool(), BM25Retriever(_pool()), scope="everything"))  # type: ignore[arg-type]


def test_mining_real_tasks(shared_tasks_dir: Path, tmp_path: Path) -> None:
    names = "sst2,copa,rte,arc_e,natural_questions"
    source = DirectorySource(shared_tasks_dir)
    build(
        source,
        resolve_tasks(names),
        tmp_path,
        BuildConfig(tasks=tuple(names.split(",")), source="shared", max_train=30),
    )
    data = DataDir(tmp_path)
    pool = list(data.passages())
    by_id = {p.id: p for p in pool}
    records = list(data.records("train"))
    out = list(mine_candidates(records, pool, BM25Retriever(pool), top_n=20, scope="task"))
    assert len(out) == len(records) == 150
    for cands in out:
        assert len(cands.doc_ids) == 20 and cands.query_id not in cands.doc_ids
        assert all(by_id[d].task_name == cands.task_name for d in cands.doc_ids)
        assert all(not by_id[d].contents.startswith(cands.query + "\n") or d != cands.query_id for d in cands.doc_ids)
    # BM25 finds lexically related examples: the best hit shares words with the query.
    sst2 = next(c for c in out if c.task_name == "sst2")
    assert sst2.doc_scores[0] > 0


def test_dense_mining_with_the_embedded_encoder() -> None:
    from llmr.candidates import DenseRetriever

    pool = _pool()
    dense = DenseRetriever("all-minilm-l6-v2", pool)
    (cands,) = mine_candidates([QUERY], pool, dense, top_n=10, scope="task")
    assert set(cands.doc_ids) == {"sst2_train_1", "sst2_train_2"}  # own item and its duplicate excluded
    assert cands.doc_scores == sorted(cands.doc_scores, reverse=True) and all(-1 <= s <= 1 for s in cands.doc_scores)
    (unified,) = mine_candidates([QUERY], pool, dense, top_n=10, scope="unified")
    assert unified.doc_ids[:2] == cands.doc_ids and len(unified.doc_ids) == 4
