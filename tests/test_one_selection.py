"""One selection core: what `llmr eval` measures is what the library, the HTTP service, LangChain and DSPy serve."""

from __future__ import annotations

import pytest

from fakes import FakeLLM
from llmr.data.schema import Passage, Record
from llmr.evaluation import EvalSettings, OutcomeCache, evaluate_methods
from llmr.serving import Selector

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("langchain_core")
dspy = pytest.importorskip("dspy")

REVIEWS = [
    ("a warm, funny and beautifully acted film", "Positive"),
    ("an absolute joy from start to finish", "Positive"),
    ("one of the best movies of the year", "Positive"),
    ("the plot is a mess and the jokes fall flat", "Negative"),
    ("tedious, predictable and far too long", "Negative"),
    ("a boring film with wooden acting", "Negative"),
    ("a boring film, with wooden acting!", "Negative"),
]
NEWS = [
    ("A dull and boring movie sinks the studio's shares", "Business"),
    ("A joyful, funny film tops the box office", "Business"),
]
QUERIES = ["a dull and boring movie", "a joyful, funny film", "the acting is wooden"]


def test_eval_library_http_langchain_and_dspy_choose_the_same_examples_in_the_same_order(tmp_path) -> None:
    from llmr.integrations.dspy import LLMRFewShot
    from llmr.integrations.langchain import LLMRExampleSelector
    from llmr.serving.service import background_server, create_app

    reviews = [Passage(id=f"sst2-{i}", contents=f"{q}\n{a}", task_name="sst2") for i, (q, a) in enumerate(REVIEWS)]
    news = [Passage(id=f"news-{i}", contents=f"{q}\n{a}", task_name="ag_news") for i, (q, a) in enumerate(NEWS)]
    pool = reviews + news  # another task's items, closer to some queries: task scoping must hold everywhere
    records = [Record(query_id=f"q{i}", query=q, answers=["Positive"], task_name="sst2") for i, q in enumerate(QUERIES)]
    selector = Selector.load("all-minilm-l6-v2", pool)
    id_of = {p.contents: p.id for p in pool}
    trainset = [dspy.Example(text=q, label=a).with_inputs("text") for q, a in REVIEWS]  # the task's items, as DSPy's
    k, scoped = 3, []
    with background_server(create_app(selector)) as url, httpx.Client(base_url=url) as client:
        for n, options in enumerate([{}, {"diversity": 0.6}, {"balance_labels": True}]):
            settings = EvalSettings(budget_tokens=None, **options)
            cache = OutcomeCache(tmp_path / f"{n}.sqlite")
            runs, _ = evaluate_methods(FakeLLM(), ["dense"], pool, records, [k], [0], cache, settings)
            evaluated = [[e["id"] for e in outcome["examples"]] for outcome in runs["dense", k, 0]]  # prompt order
            library = [
                [e.passage.id for e in selector.select(q, k, task="sst2", order="best_last", **options)]
                for q in QUERIES
            ]
            body = {"queries": QUERIES, "k": k, "task": "sst2", "order": "best_last", **options}
            served = [[e["id"] for e in found] for found in client.post("/v1/select", json=body).json()["results"]]
            lc = LLMRExampleSelector(selector, k, task="sst2", **options)
            langchain = [
                [id_of[f"{e['input']}\n{e['output']}"] for e in lc.select_examples({"input": q})] for q in QUERIES
            ]
            fewshot = LLMRFewShot(trainset, k=k, **options)
            demos = [[id_of[f"{d.text}\n{d.label}"] for d in fewshot.demos(text=q)] for q in QUERIES]
            assert all(len(ids) == k and ids[0].startswith("sst2") for ids in evaluated), options
            assert evaluated == library == served == langchain == demos, options
            scoped.append(evaluated)
    assert scoped[0] != [[e.passage.id for e in selector.select(q, k, order="best_last")] for q in QUERIES]
    assert scoped[1] != scoped[0] != scoped[2]  # each option changes some choice
