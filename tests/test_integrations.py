"""LangChain and DSPy, each with the real package and the embedded encoder (skipped where not installed)."""

from __future__ import annotations

import pytest

EXAMPLES = [
    {"question": "What is the capital of France?", "answer": "Paris"},
    {"question": "What is the capital of Japan?", "answer": "Tokyo"},
    {"question": "How many legs does a spider have?", "answer": "eight"},
    {"question": "Who wrote Hamlet?", "answer": "Shakespeare"},
]


def test_langchain_selector_in_a_few_shot_prompt() -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.prompts import FewShotPromptTemplate, PromptTemplate

    from llmr.integrations.langchain import LLMRExampleSelector

    selector = LLMRExampleSelector.from_examples(EXAMPLES, k=2, input_keys=["question"])
    chosen = selector.select_examples({"question": "What is the capital of Italy?"})
    assert {e["answer"] for e in chosen} == {"Paris", "Tokyo"}  # the two capital questions
    selector.add_example({"question": "What is the capital of Spain?", "answer": "Madrid"})
    prompt = FewShotPromptTemplate(
        example_selector=selector,
        example_prompt=PromptTemplate.from_template("Q: {question}\nA: {answer}"),
        suffix="Q: {question}\nA:",
        input_variables=["question"],
    )
    text = prompt.format(question="Which city is the capital of Spain?")
    assert "A: Madrid" in text and "spider" not in text and text.endswith("Q: Which city is the capital of Spain?\nA:")


def test_langchain_selector_over_a_trained_pool_returns_input_output_dicts() -> None:
    pytest.importorskip("langchain_core")
    from llmr import Selector
    from llmr.integrations.langchain import LLMRExampleSelector

    pool = [{"id": "a", "contents": "Review: a joy to watch\nPositive", "task_name": "sst2"}]
    selector = LLMRExampleSelector(Selector.load("all-minilm-l6-v2", pool), k=1, task="sst2")
    assert selector.select_examples({"input": "a fun film"}) == [
        {"input": "Review: a joy to watch", "output": "Positive"}
    ]


def test_dspy_program_sees_the_demos_chosen_for_each_input() -> None:
    dspy = pytest.importorskip("dspy")
    from dspy.utils import DummyLM

    from llmr.integrations.dspy import LLMRFewShot

    trainset = [dspy.Example(**e).with_inputs("question") for e in EXAMPLES]
    fewshot = LLMRFewShot(trainset, k=1)
    assert fewshot.demos(question="How many legs does an ant have?")[0].answer == "eight"
    program = fewshot.compile(dspy.Predict("question -> answer"))
    lm = DummyLM([{"answer": "Rome"}, {"answer": "Marlowe"}])
    with dspy.context(lm=lm):
        assert program(question="What is the capital of Italy?").answer == "Rome"
        first = str(lm.history[-1]["messages"])
        program(question="Who wrote Macbeth?")
        second = str(lm.history[-1]["messages"])
    assert ("Paris" in first or "Tokyo" in first) and "Shakespeare" not in first
    assert "Shakespeare" in second and "Paris" not in second


def test_dspy_on_a_given_selector_shows_only_its_own_examples() -> None:
    dspy = pytest.importorskip("dspy")
    from llmr.integrations.dspy import LLMRFewShot
    from llmr.serving.selector import Selector

    selector = Selector.load("all-minilm-l6-v2", [{"id": "0", "contents": "What is the capital of Italy?\nRome"}])
    trainset = [dspy.Example(**e).with_inputs("question") for e in EXAMPLES]
    fewshot = LLMRFewShot(trainset, selector=selector, k=2)
    demos = fewshot.demos(question="What is the capital of Italy?")
    assert len(demos) == 2 and all(d in trainset for d in demos)  # the selector's own item is never a demo
    assert len(selector.passages) == len(EXAMPLES) + 1  # nor was it overwritten


QUESTIONS = [
    "What is the capital of Italy?",
    "How many legs does an ant have?",
    "Who wrote Macbeth?",
    "What is the capital of Germany?",
    "How many legs does a crab have?",
    "Who wrote Othello?",
] * 2


def test_dspy_concurrent_calls_never_see_each_others_demos() -> None:
    dspy = pytest.importorskip("dspy")
    import time
    from concurrent.futures import ThreadPoolExecutor

    from llmr.integrations.dspy import LLMRFewShot

    class DemoEcho(dspy.Module):  # answers with its demo, after a pause in which other calls run
        def __init__(self) -> None:
            super().__init__()
            self.predict = dspy.Predict("question -> answer")

        def forward(self, question: str) -> dspy.Prediction:
            time.sleep(0.05)
            return dspy.Prediction(answer=self.predict.demos[-1].answer)

    fewshot = LLMRFewShot([dspy.Example(**e).with_inputs("question") for e in EXAMPLES], k=1)
    expected = [fewshot.demos(question=q)[-1].answer for q in QUESTIONS]
    assert len(set(expected)) >= 3
    program = fewshot.compile(DemoEcho())
    with ThreadPoolExecutor(6) as pool:
        assert [p.answer for p in pool.map(lambda q: program(question=q), QUESTIONS)] == expected
    pairs = [(program, dspy.Example(question=q).with_inputs("question")) for q in QUESTIONS]
    assert [p.answer for p in dspy.Parallel(num_threads=6)(pairs)] == expected
    assert all(not p.demos for p in program.predictors())  # nothing left on the shared program


def test_langchain_and_dspy_put_the_best_example_last_by_default() -> None:
    pytest.importorskip("langchain_core")
    dspy = pytest.importorskip("dspy")
    from llmr.integrations.dspy import LLMRFewShot
    from llmr.integrations.langchain import LLMRExampleSelector

    query = "What is the capital of Japan, the country?"
    chosen = LLMRExampleSelector.from_examples(EXAMPLES, k=3, input_keys=["question"]).select_examples(
        {"question": query}
    )
    assert chosen[-1]["answer"] == "Tokyo"
    first = LLMRExampleSelector.from_examples(EXAMPLES, k=3, input_keys=["question"], order="best_first")
    assert first.select_examples({"question": query}) == chosen[::-1]
    fewshot = LLMRFewShot([dspy.Example(**e).with_inputs("question") for e in EXAMPLES], k=3)
    assert fewshot.demos(question=query)[-1].answer == "Tokyo"


def test_langchain_and_dspy_follow_the_one_rule_for_k_over_the_pool_and_empty_queries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("langchain_core")
    dspy = pytest.importorskip("dspy")
    from llmr.integrations.dspy import LLMRFewShot
    from llmr.integrations.langchain import LLMRExampleSelector

    lc = LLMRExampleSelector.from_examples(EXAMPLES, k=10, input_keys=["question"])
    assert len(lc.select_examples({"question": "capital of Italy?"})) == len(EXAMPLES)
    with pytest.raises(ValueError, match="empty query"):
        lc.select_examples({"question": " "})
    trainset = [dspy.Example(**e).with_inputs("question") for e in EXAMPLES]
    fewshot = LLMRFewShot(trainset, k=10)
    assert len(fewshot.demos(question="capital of Italy?")) == len(EXAMPLES)
    with pytest.raises(ValueError, match="empty query"):
        fewshot.demos(question="")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == [f"k = 10 is over the {len(EXAMPLES)} items of the pool: at most 4 returned"] * 2


def test_langchain_selector_filters_explains_and_selects_async() -> None:
    pytest.importorskip("langchain_core")
    import asyncio

    from langchain_core.prompts import FewShotPromptTemplate, PromptTemplate

    from llmr.integrations.langchain import LLMRExampleSelector

    tagged = [{**e, "kind": "geo" if "capital" in e["question"] else "other"} for e in EXAMPLES]
    selector = LLMRExampleSelector.from_examples(tagged, k=2, input_keys=["question"], where={"kind": "other"})
    chosen = selector.select_examples({"question": "What is the capital of Italy?"})
    assert len(chosen) == 2 and {e["kind"] for e in chosen} == {"other"}  # filtered before the search
    explained = LLMRExampleSelector.from_examples(EXAMPLES, k=2, input_keys=["question"], explain=True)
    best_last = explained.select_examples({"question": "What is the capital of Italy?"})
    assert [e["llmr"]["rank"] for e in best_last] == [2, 1] and best_last[1]["llmr"]["score"] > 0
    prompt = FewShotPromptTemplate(
        example_selector=explained,
        example_prompt=PromptTemplate.from_template("Q: {question}\nA: {answer}"),
        suffix="Q: {question}\nA:",
        input_variables=["question"],
    )
    assert asyncio.run(explained.aselect_examples({"question": "What is the capital of Italy?"})) == best_last
    assert asyncio.run(prompt.aformat(question="capital of Italy?")) == prompt.format(question="capital of Italy?")


def test_dspy_filters_before_the_search_and_explains_each_demo() -> None:
    dspy = pytest.importorskip("dspy")
    from dspy.utils import DummyLM

    from llmr.integrations.dspy import LLMRFewShot

    tagged = [dspy.Example(**e, kind="geo" if "capital" in e["question"] else "other") for e in EXAMPLES]
    trainset = [e.with_inputs("question") for e in tagged]
    query = "What is the capital of Italy?"
    assert {d.kind for d in LLMRFewShot(trainset, k=2).demos(question=query)} == {"geo"}  # unfiltered: capitals
    for where in ({"kind": "other"}, lambda e: e.kind == "other"):
        filtered = LLMRFewShot(trainset, k=2, where=where).demos(question=query)
        assert len(filtered) == 2 and {d.kind for d in filtered} == {"other"}  # filtered first: still k

    first = LLMRFewShot(trainset, k=3, explain=True, order="best_first").demos(question=query)
    ranks, scores = [d.llmr["rank"] for d in first], [d.llmr["score"] for d in first]
    assert ranks == [1, 2, 3] and scores == sorted(scores, reverse=True) and scores[0] > scores[2]
    assert first[0].answer in ("Paris", "Tokyo") and list(first[0].inputs()) == ["question"]
    fewshot = LLMRFewShot(trainset, k=3, explain=True)  # best last, as in the prompt
    assert [(d.answer, d.llmr) for d in fewshot.demos(question=query)] == [(d.answer, d.llmr) for d in first[::-1]]
    assert all("llmr" not in e for e in trainset)  # the demos are copies

    lm = DummyLM([{"answer": "Rome"}])
    with dspy.context(lm=lm):
        assert fewshot.compile(dspy.Predict("question -> answer"))(question=query).answer == "Rome"
    prompt = str(lm.history[-1]["messages"])
    assert "Paris" in prompt and "rank" not in prompt and "llmr" not in prompt  # the adapter shows only the fields
