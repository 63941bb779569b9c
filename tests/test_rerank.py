"""Methods beyond an index: precomputed candidate lists (oracles, released files) and the ConE reranker."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import FakeLLM
from llmr.data.jsonl import write_jsonl
from llmr.data.schema import CandidateList, Passage, Record
from llmr.distributed.engine import LocalEngine
from llmr.evaluation import EvalSettings, OutcomeCache, evaluate_methods, make_selector
from llmr.evaluation.rerank import ConEReranker, Interleaved, RankedSelector, make_method
from llmr.scoring.cache import ScoreCache

POOL = [Passage(id=f"p{i}", contents=f"Review: film number {i}\nPositive", task_name="sst2") for i in range(6)]
QUERY = Record(query_id="q0", query="Review: film number 3 again", answers=["Positive"], task_name="sst2")


def _lists(path: Path, scores: list[float]) -> Path:
    write_jsonl(path, [CandidateList(**QUERY.model_dump(), doc_ids=[p.id for p in POOL], doc_scores=scores)])
    return path


def test_ranked_selector_takes_the_highest_scores_first_and_ties_in_file_order(tmp_path: Path) -> None:
    path = _lists(tmp_path / "oracle.jsonl.gz", [0.1, 0.9, -100.0, 0.9, 0.5, 0.2])
    selector = make_method(f"oracle:{path}", POOL, LocalEngine(FakeLLM()))
    assert isinstance(selector, RankedSelector) and selector.name == "oracle"
    assert [e.passage.id for e in selector.select_many([QUERY], 3)[0]] == ["p1", "p3", "p4"]
    other = make_method(f"oracle:{_lists(tmp_path / 'b.jsonl.gz', [0.0] * 6)}", POOL, LocalEngine(FakeLLM()))
    assert other.fingerprint != selector.fingerprint  # another file, other outcomes in the eval cache
    stranger = QUERY.model_copy(update={"query_id": "q9"})
    with pytest.raises(KeyError, match="no candidate list for query 'q9'"):
        selector.select_many([stranger], 2)


def test_interleaved_alternates_two_selectors_without_duplicates() -> None:
    bm25, dense = make_selector("bm25", POOL), make_selector("dense", POOL)
    a, b = bm25.select_many([QUERY], 4)[0], dense.select_many([QUERY], 4)[0]
    merged = Interleaved(bm25, dense).select_many([QUERY], 4)[0]
    ids = [e.passage.id for e in merged]
    assert len(ids) == len(set(ids)) == 4
    assert ids[0] == a[0].passage.id and set(ids) <= {e.passage.id for e in a + b}


def test_cone_reranks_by_log_p_of_the_query_after_each_candidate_and_caches(tmp_path: Path) -> None:
    llm = FakeLLM()
    base = make_selector("bm25", POOL)
    cone = ConEReranker(base, LocalEngine(llm), ScoreCache(tmp_path / "s.sqlite"), top_n=5)
    chosen = cone.select_many([QUERY], 2)[0]
    candidates = base.select_many([QUERY], 5)[0]
    scores = FakeLLM().score([f"{e.passage.contents}\n\n" for e in candidates], [QUERY.query] * 5)
    best = sorted(zip(candidates, scores, strict=True), key=lambda cs: -cs[1].mean)[:2]
    assert [e.passage.id for e in chosen] == [c.passage.id for c, _ in best]
    assert [e.score for e in chosen] == pytest.approx([s.mean for _, s in best])
    calls = len(llm.calls)
    assert cone.select_many([QUERY], 2)[0] == chosen and len(llm.calls) == calls  # from the score cache


def test_cone_is_an_eval_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMR_CACHE", str(tmp_path))  # its LLM scores go to the score cache
    runs, _ = evaluate_methods(
        FakeLLM(), ["bm25", "cone"], POOL, [QUERY], [2], [0], OutcomeCache(tmp_path / "o.sqlite"), EvalSettings()
    )
    assert len(runs["cone", 2, 0][0]["examples"]) == 2
    assert ScoreCache(tmp_path / "scores.sqlite").count() == len(POOL)  # each candidate scored once
