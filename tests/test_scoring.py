"""LLM feedback scoring: sampling, penalties, cache, resume, plan (fake LLM), and the real pipeline."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes import FakeLLM
from llmr.data.directory import DataDir
from llmr.data.schema import PENALTY, CandidateList, Passage
from llmr.llm import load_llm
from llmr.prompt import build_prompt
from llmr.scoring.cache import ScoreCache, pair_key
from llmr.scoring.feedback import (
    MARGIN,
    ScoringConfig,
    cache_namespace,
    collect,
    make_jobs,
    plan,
    run_scoring,
    sample_doc_ids,
)

POOL = {
    p.id: p
    for p in [
        Passage(id="s0", contents="Review: great\nPositive", task_name="sst2"),
        Passage(id="s1", contents="Review: awful\nNegative", task_name="sst2"),
        Passage(id="s2", contents="Review: lovely\nPositive", task_name="sst2"),
        Passage(id="c0", contents='"The man fell." What is the cause?\nHe slipped.', task_name="copa"),
        Passage(id="c1", contents='"It rained." What is the effect?\nThe road got wet.', task_name="copa"),
    ]
}
SST2 = CandidateList(
    query_id="sst2_train_9",
    query="Review: nice",
    answers=["Positive"],
    task_name="sst2",
    doc_ids=["s0", "s1", "s2", "c0"],
    doc_scores=[4.0, 3.0, 2.0, 1.0],
)
COPA = CandidateList(
    query_id="copa_train_9",
    query='"The glass broke." What is the cause?',
    answers=["B"],
    options=["It was cold.", "It fell off the table."],
    task_name="copa",
    doc_ids=["c0", "c1", "s0"],
    doc_scores=[2.0, 1.0, 0.5],
)


def test_pairs_follow_the_paper_format_and_penalties() -> None:
    sst2, copa = make_jobs([SST2, COPA], POOL, ScoringConfig(n_candidates=32))
    assert sst2.doc_ids == ["s0", "s1", "s2", "c0"]
    # s1 has another label (Negative), c0 is another task: both -100 without an LLM call.
    assert sst2.pairs[1] is None and sst2.pairs[3] is None
    assert sst2.pairs[0] == [("Review: great\nPositive\n\nReview: nice\n", "Positive")]
    assert sst2.pairs[0][0][0] == build_prompt([POOL["s0"].contents], SST2.query)
    # Multiple choice: the continuation is the right option's text; labels are not compared.
    assert copa.pairs[0] == [(POOL["c0"].contents + "\n\n" + COPA.query + "\n", "It fell off the table.")]
    assert copa.pairs[1] is not None and copa.pairs[2] is None


def test_penalties_can_be_switched_off() -> None:
    (job,) = make_jobs([SST2], POOL, ScoringConfig(penalize_other_task=False, penalize_label_mismatch=False))
    assert all(p is not None for p in job.pairs)


def test_margin_signal_is_gold_minus_best_other_answer(tmp_path: Path) -> None:
    config = ScoringConfig(signal="margin")
    sst2, copa = make_jobs([SST2, COPA], POOL, config)
    (context, target) = sst2.pairs[0][0]
    assert context == build_prompt([POOL["s0"].contents], SST2.query)
    assert json.loads(target.removeprefix(MARGIN)) == {"gold": "Positive", "others": ["Negative"], "mean": False}
    assert json.loads(copa.pairs[0][0][1].removeprefix(MARGIN))["gold"] == "It fell off the table."  # averaged
    llm, cache = FakeLLM(), ScoreCache(tmp_path / "c.sqlite")
    run_scoring([sst2, copa], llm, cache, config)
    out = list(collect([sst2, copa], cache_namespace(llm.fingerprint, config), cache))
    gold, other = FakeLLM().score([context, context], ["Positive", "Negative"])
    assert out[0].doc_scores[0] == pytest.approx(gold.logprob - other.logprob)
    opts = FakeLLM().score([copa.pairs[0][0][0]] * 2, ["It fell off the table.", "It was cold."])
    assert out[1].doc_scores[0] == pytest.approx(opts[0].mean - opts[1].mean)
    # Each signal keeps its own scores: the paper's namespace is unchanged.
    assert cache_namespace("m", config) != cache_namespace("m", ScoringConfig())
    assert cache_namespace("m", ScoringConfig()) == "m|chunk_pairs=256"


def test_query_signal_scores_the_query_after_the_candidate() -> None:
    (job,) = make_jobs([SST2], POOL, ScoringConfig(signal="query"))
    assert job.pairs[0] == [("Review: great\nPositive\n\n", "Review: nice")]


def test_kshot_signal_compares_candidates_in_the_same_contexts(tmp_path: Path) -> None:
    pool = {f"p{i}": Passage(id=f"p{i}", contents=f"Review: film {i}\nPositive", task_name="sst2") for i in range(8)}
    cands = SST2.model_copy(update={"doc_ids": list(pool), "doc_scores": [0.0] * 8})
    config = ScoringConfig(signal="kshot", kshot_k=4, kshot_contexts=3)
    (job,) = make_jobs([cands], pool, config)
    assert all(1 <= len(pairs) <= 3 for pairs in job.pairs)  # a context holding the candidate is skipped
    for pairs in job.pairs:
        for context, answer in pairs:
            assert answer == "Positive" and context.count("Positive") == 4 and context.endswith("Review: nice\n")
    # Context s shows the same three others at the same places for every candidate it does not hold.
    skeletons = {
        tuple(line for line in ctx.split("\n\n")[:-1] if line != pool[doc].contents)
        for doc, pairs in zip(job.doc_ids, job.pairs, strict=True)
        for ctx, _ in pairs[:1]
    }
    assert len(skeletons) <= 3 + 1
    assert make_jobs([cands], pool, config)[0].pairs == job.pairs  # seeded
    llm, cache = FakeLLM(), ScoreCache(tmp_path / "c.sqlite")
    run_scoring([job], llm, cache, config)
    (out,) = collect([job], cache_namespace(llm.fingerprint, config), cache)
    expected = [sum(s.mean for s in FakeLLM().score(*zip(*pairs, strict=True))) / len(pairs) for pairs in job.pairs]
    assert out.doc_scores == pytest.approx(expected)


def test_an_unknown_signal_is_refused() -> None:
    with pytest.raises(ValueError, match="signal = 'best'"):
        ScoringConfig(signal="best")


def test_sampling_is_seeded_per_query_and_keeps_rank_order() -> None:
    cands = SST2.model_copy(update={"doc_ids": [f"d{i}" for i in range(50)], "doc_scores": [0.0] * 50})
    a, b = sample_doc_ids(cands, 8, seed=1), sample_doc_ids(cands, 8, seed=1)
    assert a == b and len(a) == 8 and a == sorted(a, key=lambda d: int(d[1:]))
    assert sample_doc_ids(cands, 8, seed=2) != a
    other = cands.model_copy(update={"query_id": "another"})
    assert sample_doc_ids(other, 8, seed=1) != a


def test_unknown_doc_id_is_a_clear_error() -> None:
    bad = SST2.model_copy(update={"doc_ids": ["nope"], "doc_scores": [1.0]})
    with pytest.raises(KeyError, match="candidate 'nope' is not in the pool"):
        make_jobs([bad], POOL, ScoringConfig())


def test_scores_are_cached_and_reused(tmp_path: Path) -> None:
    jobs = make_jobs([SST2, COPA], POOL, ScoringConfig())
    llm, cache = FakeLLM(), ScoreCache(tmp_path / "c.sqlite")
    first = run_scoring(jobs, llm, cache, ScoringConfig(chunk_pairs=1))
    assert first == {"pairs": 4, "cached": 0, "scored": 4} and llm.calls == [1, 1, 1, 1]
    again = run_scoring(jobs, llm, cache, ScoringConfig(chunk_pairs=1))
    assert again == {"pairs": 4, "cached": 4, "scored": 0} and llm.calls == [1, 1, 1, 1]
    out = list(collect(jobs, cache_namespace(llm.fingerprint, ScoringConfig(chunk_pairs=1)), cache))
    expected = FakeLLM().score(*zip(*[p[0] for p in jobs[0].pairs if p], strict=True))
    assert out[0].doc_scores[0] == pytest.approx(expected[0].mean)
    assert out[0].doc_scores[1] == PENALTY and out[0].doc_scores[3] == PENALTY
    assert out[1].doc_ids == ["c0", "c1", "s0"] and out[1].options == COPA.options


def test_cache_is_keyed_by_model(tmp_path: Path) -> None:
    cache = ScoreCache(tmp_path / "c.sqlite")
    jobs = make_jobs([SST2], POOL, ScoringConfig())
    run_scoring(jobs, FakeLLM(), cache, ScoringConfig())
    other = FakeLLM()
    other.fingerprint = "fake:v2"
    assert run_scoring(jobs, other, cache, ScoringConfig())["scored"] == 2
    with pytest.raises(RuntimeError, match="no cached score"):
        list(collect(jobs, cache_namespace("fake:v3", ScoringConfig()), cache))


def test_pair_key_has_no_boundary_collisions() -> None:
    assert pair_key("ab", "c") != pair_key("a", "bc")


def test_plan_counts_and_estimates(tmp_path: Path) -> None:
    jobs = make_jobs([SST2, COPA], POOL, ScoringConfig())
    cache = ScoreCache(tmp_path / "c.sqlite")
    report = plan(jobs, FakeLLM(), cache, ScoringConfig())
    assert report["queries"] == 2 and report["candidates"] == 7 and report["penalized"] == 3
    assert report["unique_pairs"] == 4 and report["pairs_to_score"] == 4 and report["tokens_to_score"] > 0
    assert report["estimated_seconds"] > 0
    assert cache.count() == 0  # calibration is not cached: the real run batches on its own
    run_scoring(jobs, FakeLLM(), cache, ScoringConfig())
    assert plan(jobs, FakeLLM(), cache, ScoringConfig())["pairs_to_score"] == 0


def test_scores_are_keyed_by_chunking_and_a_partly_cached_chunk_is_scored_whole(tmp_path: Path) -> None:
    """Batches change scores in low precision, so an output must not depend on which run filled the cache."""
    jobs = make_jobs([SST2, COPA], POOL, ScoringConfig())
    llm, cache = FakeLLM(), ScoreCache(tmp_path / "c.sqlite")
    run_scoring(jobs, llm, cache, ScoringConfig(chunk_pairs=2))
    assert run_scoring(jobs, llm, cache, ScoringConfig(chunk_pairs=4))["scored"] == 4  # other batches: rescored
    first = make_jobs([SST2], POOL, ScoringConfig())  # 2 of the 4 pairs, cached in a chunk of their own
    fresh = ScoreCache(tmp_path / "d.sqlite")
    run_scoring(first, llm, fresh, ScoringConfig(chunk_pairs=4))
    llm.calls.clear()
    stats = run_scoring(jobs, llm, fresh, ScoringConfig(chunk_pairs=4))
    assert stats["scored"] == 4 and llm.calls == [4]  # one batch of 4, as a clean run scores them


def _llmr(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "llmr.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


@pytest.fixture(scope="module")
def scored_setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real data (llmr's sample rows) + BM25 candidates, made with the CLI."""
    root = tmp_path_factory.mktemp("scoring")
    for args in (
        ["data", "build", "--source", "samples", "--out", str(root / "data")],
        ["candidates", "--data", str(root / "data"), "--out", str(root / "cands.jsonl.gz"), "--top-n", "6"],
    ):
        proc = _llmr(*args)
        out = proc.communicate(timeout=300)[0].decode()
        assert proc.returncode == 0, out
    return root


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_score_with_the_real_model(scored_setup: Path) -> None:
    out = scored_setup / "scores.jsonl.gz"
    args = ["score", "--data", str(scored_setup / "data"), "-c", str(scored_setup / "cands.jsonl.gz"), "-o", str(out)]
    args += ["--n-candidates", "4", "--cache", str(scored_setup / "cache.sqlite")]
    proc = _llmr(*args)
    log = proc.communicate(timeout=600)[0].decode()
    assert proc.returncode == 0, log
    scored = list(DataDir(scored_setup).candidates("scores"))
    train = {r.query_id for r in DataDir(scored_setup / "data").records("train")}
    assert {c.query_id for c in scored} == train and len(scored) == len(train)  # every training query, once
    real = [s for c in scored for s in c.doc_scores if s != PENALTY]
    assert real and all(-30 < s < 0 for s in real)  # mean token log-probs
    manifest = json.loads((scored_setup / "scores.manifest.json").read_text())
    assert manifest["config"]["llm"].startswith("hf:gemma-3-270m") and manifest["stats"]["scored"] > 0
    # Same config and inputs: nothing to do.
    again = _llmr(*args)
    assert "up to date" in again.communicate(timeout=600)[0].decode()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_output(scored_setup: Path) -> None:
    base = ["score", "--data", str(scored_setup / "data"), "-c", str(scored_setup / "cands.jsonl.gz")]
    base += ["--n-candidates", "6", "--chunk-pairs", "4", "--penalize-label-mismatch", "--no-penalize-other-task"]
    whole = scored_setup / "whole.jsonl.gz"
    proc = _llmr(*base, "-o", str(whole), "--cache", str(scored_setup / "whole.sqlite"))
    assert proc.wait(timeout=900) == 0

    cache = scored_setup / "killed.sqlite"
    resumed = scored_setup / "resumed.jsonl.gz"
    proc = _llmr(*base, "-o", str(resumed), "--cache", str(cache))
    deadline = time.time() + 600
    rows = 0
    while time.time() < deadline and proc.poll() is None:  # kill once a few chunks are committed
        time.sleep(0.2)
        if cache.exists():
            try:
                rows = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM llm_scores").fetchone()[0]
            except sqlite3.OperationalError:
                continue
            if rows >= 8:
                break
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not resumed.exists() and rows >= 8
    proc = _llmr(*base, "-o", str(resumed), "--cache", str(cache))
    log = proc.communicate(timeout=900)[0].decode()
    assert proc.returncode == 0, log
    stats = json.loads((scored_setup / "resumed.manifest.json").read_text())["stats"]
    assert stats["cached"] >= 8 and stats["scored"] == stats["pairs"] - stats["cached"]
    assert list(DataDir(scored_setup).candidates("resumed")) == list(DataDir(scored_setup).candidates("whole"))


def test_max_per_task_scores_a_nested_sample_of_each_tasks_queries() -> None:
    lists = [SST2.model_copy(update={"query_id": f"sst2_train_{i}"}) for i in range(10)] + [COPA]
    few = make_jobs(lists, POOL, ScoringConfig(max_per_task=2))
    more = make_jobs(lists, POOL, ScoringConfig(max_per_task=5))
    assert [j.record.task_name for j in few].count("sst2") == 2 and [j.record.task_name for j in few][-1] == "copa"
    assert {j.record.query_id for j in few} < {j.record.query_id for j in more}
    assert len(make_jobs(lists, POOL, ScoringConfig())) == 11


@pytest.mark.slow
def test_margin_and_query_signals_with_the_real_model(tmp_path: Path) -> None:
    """Gemma-3-270M copies its demonstration's label (shared/notes/stack.md): a same-label example gives a
    positive margin, an other-label one a negative margin; the query signal scores the query's tokens."""
    pool = {
        "pos": Passage(id="pos", contents="Review: a wonderful, moving film\nPositive", task_name="sst2"),
        "neg": Passage(id="neg", contents="Review: a dull, tedious film\nNegative", task_name="sst2"),
    }
    query = SST2.model_copy(update={"query": "Review: a joy to watch", "doc_ids": ["pos", "neg"], "doc_scores": [0, 0]})
    llm, cache = load_llm("gemma-3-270m"), ScoreCache(tmp_path / "c.sqlite")
    scored = {}
    for name in ("margin", "query"):
        config = ScoringConfig(signal=name, penalize_label_mismatch=False)
        jobs = make_jobs([query], pool, config)
        run_scoring(jobs, llm, cache, config)
        (scored[name],) = collect(jobs, cache_namespace(llm.fingerprint, config), cache)
    pos, neg = scored["margin"].doc_scores
    assert pos > 0 > neg
    direct = llm.score([pool["pos"].contents + "\n\n"], [query.query])[0]
    assert scored["query"].doc_scores[0] == pytest.approx(direct.mean, abs=0.2)  # bf16: batches differ slightly
