"""Evaluation: metrics on hand-made cases, prompt order and budget, bootstrap, selectors, the harness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fakes import FakeLLM
from llmr.data.schema import Passage, Record
from llmr.evaluation import EvalSettings, OutcomeCache, evaluate, make_selector, select
from llmr.evaluation.inference import predict
from llmr.evaluation.metrics import (
    binary_f1,
    exact_match,
    normalize_answer,
    paired_bootstrap,
    rouge_l,
    summarize,
    task_score,
    token_f1,
)
from llmr.llm.base import Score
from llmr.prompt import build_prompt, examples_within_budget
from llmr.tasks import get_task

# -- metrics ------------------------------------------------------------------------------------


def test_squad_normalisation() -> None:
    assert normalize_answer("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theory") == "theory"  # "the" only as a word


def test_exact_match_and_f1_take_the_best_reference() -> None:
    refs = ["Barack Obama", "Obama"]
    assert exact_match("obama.", refs) == 1.0
    assert exact_match("President Obama", refs) == 0.0
    assert token_f1("President Obama", refs) == pytest.approx(2 / 3)  # vs "Obama": p 1/2, r 1
    assert token_f1("the", ["a"]) == 1.0  # both normalise to empty
    assert token_f1("Paris", ["London"]) == 0.0


def test_rouge_l_is_max_over_references() -> None:
    one = rouge_l("the cat sat on the mat", ["a dog ran in the park"])
    both = rouge_l("the cat sat on the mat", ["a dog ran in the park", "the cat sat on a mat"])
    assert one < 0.5 and both == pytest.approx(5 / 6)  # LCS 5 of 6 tokens each way
    assert rouge_l("cats sitting", ["cat sits"]) == 1.0  # stemmed


def test_multirc_f1_is_binary_f1_of_yes_over_the_task() -> None:
    assert binary_f1(["Yes", "Yes", "No", "No"], ["Yes", "No", "Yes", "No"], "Yes") == pytest.approx(0.5)
    outcomes = [{"prediction": p, "gold": g, "score": float(p == g)} for p, g in [("Yes", "Yes"), ("No", "Yes")]]
    assert task_score(get_task("multirc"), outcomes) == pytest.approx(100 * 2 / 3)
    assert task_score(get_task("sst2"), outcomes) == 50.0


def test_summary_means_by_category_overall_and_held_out() -> None:
    out = summarize({"sst2": 80.0, "sentiment140": 60.0, "rte": 50.0, "qnli": 40.0})
    assert out["category/Sentiment"] == 70.0 and out["category/NLI"] == 45.0
    assert out["average"] == 57.5 and out["held_out_average"] == 40.0


def test_paired_bootstrap_covers_a_known_difference() -> None:
    rng = np.random.default_rng(1)
    a, b = {}, {}
    for task in ("sst2", "rte"):
        base = rng.random(400) < 0.5
        better = base | (rng.random(400) < 0.2)  # b plus ~10 points
        a[task] = [{"score": float(x)} for x in better]
        b[task] = [{"score": float(x)} for x in base]
    ci = paired_bootstrap(a, b, n_resamples=500)
    truth = np.mean([100 * (np.mean([o["score"] for o in a[t]]) - np.mean([o["score"] for o in b[t]])) for t in a])
    assert ci["low"] < truth < ci["high"] and ci["difference"] == pytest.approx(truth)
    assert ci["low"] > 0  # the gain is clearly positive
    same = paired_bootstrap(b, b, n_resamples=100)
    assert same["low"] == same["high"] == 0.0
    with pytest.raises(ValueError, match="different queries"):
        paired_bootstrap(a, {"sst2": b["sst2"][:10], "rte": b["rte"]})


def outs(task: str, scores: list[float]) -> list[dict]:
    return [
        {"task": task, "query_id": f"{task}{i}", "score": s, "prediction": "", "gold": ""} for i, s in enumerate(scores)
    ]


def test_report_gives_held_out_cis_when_held_out_tasks_are_evaluated() -> None:
    from llmr.evaluation.report import aggregate

    runs = {
        ("random", 4, 0): outs("sst2", [0, 1, 0, 1]) + outs("qnli", [0, 0, 0, 1]),
        ("bm25", 4, 0): outs("sst2", [1, 1, 0, 1]) + outs("qnli", [1, 1, 0, 1]),
    }
    block = aggregate(runs, n_resamples=100)["by_k"]["4"]
    assert block["ci_held_out"]["bm25 - random"]["difference"] == pytest.approx(50.0)  # qnli only
    assert block["ci"]["bm25 - random"]["difference"] == pytest.approx(37.5)  # mean of sst2 (+25) and qnli (+50)
    assert block["summary"]["bm25"]["held_out_average"] == 75.0
    without = aggregate({key: [o for o in v if o["task"] == "sst2"] for key, v in runs.items()}, n_resamples=100)
    assert without["by_k"]["4"]["ci_held_out"] == {}


# -- prompts ------------------------------------------------------------------------------------


def words(texts):
    return [len(t.split()) for t in texts]


def test_budget_drops_the_least_similar_examples_first_and_never_the_query() -> None:
    examples = ["most similar one", "second best here", "least similar example"]  # 3 words each
    query = "the query itself"
    assert examples_within_budget(examples, query, None, words) == 3
    assert examples_within_budget(examples, query, 12, words) == 3
    assert examples_within_budget(examples, query, 11, words) == 2
    assert examples_within_budget(examples, query, 6, words) == 1
    assert examples_within_budget(examples, query, 2, words) == 0  # the query alone is over: no examples
    n = examples_within_budget(examples, query, 9, words)
    prompt = build_prompt(examples[:n][::-1], query)
    assert prompt == "second best here\n\nmost similar one\n\nthe query itself\n"  # most similar last


# -- inference ----------------------------------------------------------------------------------


class TableLLM(FakeLLM):
    """Scores a continuation from a table: (logprob, n_tokens)."""

    def __init__(self, table: dict[str, tuple[float, int]]) -> None:
        super().__init__()
        self.table = table

    def score(self, contexts, continuations):
        return [Score(*self.table[c]) for c in continuations]

    def generate(self, prompts, max_new_tokens=64, stop="\n"):
        return [" Paris " for _ in prompts]


def test_cls_takes_the_highest_total_and_mc_the_highest_mean_log_likelihood() -> None:
    llm = TableLLM({"Negative": (-2.0, 1), "Positive": (-3.0, 3), "short": (-2.0, 1), "much longer": (-3.0, 3)})
    rec = Record(query_id="q", query="q", answers=["Positive"], options=[""], task_name="sst2")
    assert predict(llm, get_task("sst2"), [rec], ["p"]) == ["Negative"]  # sum: -2 > -3
    mc = Record(query_id="c", query="q", answers=["B"], options=["short", "much longer"], task_name="copa")
    assert predict(llm, get_task("copa"), [mc], ["p"]) == ["B"]  # mean: -1 > -2
    nq = Record(query_id="n", query="q", answers=["Paris"], options=[""], task_name="natural_questions")
    assert predict(llm, get_task("natural_questions"), [nq], ["p"]) == ["Paris"]


# -- selectors and the harness --------------------------------------------------------------------


def _pool() -> list[Passage]:
    pool = []
    for i, (text, label) in enumerate(
        [
            ("a wonderful film", "Positive"),
            ("an awful film", "Negative"),
            ("great acting", "Positive"),
            ("boring plot", "Negative"),
            ("lovely music", "Positive"),
            ("dull and slow", "Negative"),
        ]
    ):
        pool.append(Passage(id=f"sst2_{i}", contents=f"Review: {text}\n{label}", task_name="sst2"))
    pool += [
        Passage(id=f"nq_{i}", contents=f"Question: what film {i}?\nfilm {i}", task_name="natural_questions")
        for i in range(4)
    ]
    return pool


QUERIES = [
    Record(
        query_id="t0", query="Review: a wonderful film indeed", answers=["Positive"], options=[""], task_name="sst2"
    ),
    Record(query_id="t1", query="Review: boring and dull", answers=["Negative"], options=[""], task_name="sst2"),
]


@pytest.mark.parametrize("method", ["zero", "random", "kmeans", "bm25", "dense"])
def test_each_selector_returns_k_same_task_examples_most_similar_first(method: str) -> None:
    selector = make_selector(method, _pool(), seed=3)
    chosen = select(selector, QUERIES[0], 2)
    if method == "zero":
        assert chosen == []
        return
    assert len(chosen) == 2 and all(e.passage.task_name == "sst2" for e in chosen)
    if method in ("bm25", "dense"):
        assert chosen[0].passage.id == "sst2_0" and chosen[0].score >= chosen[1].score
    assert [e.passage.id for e in select(make_selector(method, _pool(), seed=3), QUERIES[0], 2)] == [
        e.passage.id for e in chosen
    ]  # seeded: the same choice again


def test_random_selector_depends_on_the_seed() -> None:
    picks = {
        tuple(e.passage.id for e in select(make_selector("random", _pool(), seed=s), QUERIES[0], 3)) for s in range(6)
    }
    assert len(picks) > 1


def test_unknown_method_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown method 'bm42'"):
        make_selector("bm42", _pool())


def test_dense_index_is_saved_and_reused_only_for_the_same_pool(tmp_path: Path) -> None:
    make_selector("dense", _pool(), index_dir=tmp_path)
    assert len(list(tmp_path.glob("*.faiss"))) == 1
    make_selector("dense", _pool(), index_dir=tmp_path)
    assert len(list(tmp_path.glob("*.faiss"))) == 1  # reused
    make_selector("dense", _pool()[:-1], index_dir=tmp_path)
    assert len(list(tmp_path.glob("*.faiss"))) == 2  # another pool, another index


def test_harness_caches_outcomes_and_a_new_method_runs_only_itself(tmp_path: Path) -> None:
    llm = FakeLLM()
    cache = OutcomeCache(tmp_path / "cache.sqlite")
    bm25 = make_selector("bm25", _pool())
    first = evaluate(llm, bm25, QUERIES, 2, cache, EvalSettings(chunk=1))
    calls = len(llm.calls)
    assert calls == 2 and [o["query_id"] for o in first] == ["t0", "t1"]
    assert first[0]["examples"][-1]["id"] == "sst2_0"  # the most similar example sits last, next to the query
    assert first[0]["prompt"].endswith("Review: a wonderful film indeed\n")
    assert evaluate(llm, bm25, QUERIES, 2, cache, EvalSettings(chunk=1)) == first
    assert len(llm.calls) == calls  # all from the cache
    evaluate(llm, make_selector("random", _pool()), QUERIES, 2, cache)
    assert len(llm.calls) == calls + 1  # only the new method ran (one chunk)
    evaluate(llm, bm25, QUERIES, 1, cache)
    assert len(llm.calls) == calls + 2  # a new k is new work


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_eval_cli_writes_table_plots_and_explanations_with_the_real_model(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from llmr.cli import app

    runner = CliRunner()
    built = runner.invoke(app, ["data", "build", "--source", "samples", "--out", str(tmp_path / "data")])
    assert built.exit_code == 0, built.output
    out = tmp_path / "eval"
    args = ["eval", "--data", str(tmp_path / "data"), "-o", str(out), "--methods", "zero,random,bm25"]
    args += ["--tasks", "sst2,copa,natural_questions", "--k", "2", "--resamples", "100"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    results = json.loads((out / "results.json").read_text())
    block = results["by_k"]["2"]
    assert set(block["per_task"]["bm25"]) == {"sst2", "copa", "natural_questions"}
    assert "bm25 - random" in block["ci"] and "average" in block["summary"]["zero"]
    assert "| **average** |" in (out / "results.md").read_text()
    assert (out / "categories_k2.png").stat().st_size > 0 and (out / "gain_over_random_k2.png").exists()
    from llmr.data.jsonl import read_jsonl

    lines = list(read_jsonl(out / "explanations.jsonl.gz"))
    assert len(lines) == 3 * 6 and {"prompt", "prediction", "examples", "correct"} <= set(lines[0])
    zero = [x for x in lines if x["method"] == "zero"]
    assert all(x["examples"] == [] for x in zero)


def test_a_killed_evaluation_resumes_without_redoing_committed_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmr.evaluation import harness

    queries = [q.model_copy(update={"query_id": f"{q.query_id}_{i}"}) for i in range(3) for q in QUERIES]
    cache, bm25 = OutcomeCache(tmp_path / "cache.sqlite"), make_selector("bm25", _pool())
    real, calls = harness.answer, []

    def dies_on_the_third_chunk(*args, **kwargs):
        calls.append(len(args[1][0]))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(harness, "answer", dies_on_the_third_chunk)
    with pytest.raises(KeyboardInterrupt):
        evaluate(FakeLLM(), bm25, queries, 2, cache, EvalSettings(chunk=2))
    calls.clear()
    outcomes = evaluate(FakeLLM(), bm25, queries, 2, cache, EvalSettings(chunk=2))
    assert calls == [2]  # only the chunk that was lost
    assert [o["query_id"] for o in outcomes] == [q.query_id for q in queries]


def test_report_gives_cis_per_task_mode_and_against_dense() -> None:
    from llmr.evaluation.report import aggregate, markdown

    runs = {
        ("random", 4, 0): outs("sst2", [0, 0, 0, 0]) + outs("copa", [0, 1, 0, 1]),
        ("dense", 4, 0): outs("sst2", [1, 0, 0, 0]) + outs("copa", [0, 1, 0, 1]),
        ("llmr", 4, 0): outs("sst2", [1, 1, 1, 1]) + outs("copa", [0, 0, 0, 1]),
    }
    results = aggregate(runs, n_resamples=100)
    block = results["by_k"]["4"]
    assert block["summary"]["llmr"]["mode/cls"] == 100.0 and block["summary"]["llmr"]["mode/mc"] == 25.0
    assert block["ci_by_mode"]["cls"]["llmr - dense"]["difference"] == pytest.approx(75.0)
    assert block["ci_by_mode"]["mc"]["llmr - dense"]["difference"] == pytest.approx(-25.0)
    assert block["ci"]["llmr - dense"]["difference"] == pytest.approx(25.0)
    assert "random - dense" not in block["ci"]  # only methods after dense are compared with it
    text = markdown(results)
    assert "*classification tasks (mean)*" in text and "average over multiple-choice tasks" in text


def test_every_task_has_one_metric_class() -> None:
    """One class per metric decides the per-example score, the task number, and how the bootstrap and
    report treat it (graded ROUGE-L is neither right nor wrong; multirc's F1 is a corpus metric)."""
    from llmr.evaluation.metrics import metric_for
    from llmr.tasks import TASKS

    metrics = {name: metric_for(task) for name, task in TASKS.items()}
    assert {m.name for m in metrics.values()} == {t.metric for t in TASKS.values()}
    assert metrics["common_gen"].graded and not metrics["sst2"].graded
    assert [n for n, m in metrics.items() if m.corpus] == ["multirc"]
    assert metrics["squad_v1"].example("The Eiffel tower", ["eiffel tower"]) == {"score": 1.0, "em": 1.0, "f1": 1.0}
