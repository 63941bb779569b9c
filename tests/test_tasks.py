from __future__ import annotations

import gzip
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from llmr.tasks import CATEGORIES, TASKS, RowError, get_task, resolve_tasks

HELD_OUT = {"qnli", "piqa", "wsc273", "yelp"}
NO_OFFLINE_DATA = HELD_OUT | {"paws"}

# (task, row in the HF schema, query = template 0 filled in, answers, options)
CASES: list[tuple[str, dict[str, Any], str, list[str], list[str]]] = [
    (
        "natural_questions",
        {"question": "who wrote the iliad", "answer": ["Homer", "homer"]},
        "Question: who wrote the iliad? Answer:",
        ["Homer", "homer"],
        [""],
    ),
    (
        "arc_c",
        {
            "id": "Mercury_1",
            "question": "Which gas do plants absorb?",
            "choices": {"text": ["oxygen", "carbon dioxide", "nitrogen", "helium"], "label": list("ABCD")},
            "answerKey": "B",
        },
        "Which gas do plants absorb?",
        ["B"],
        ["oxygen", "carbon dioxide", "nitrogen", "helium"],
    ),
    (
        "arc_e",  # NY Regents questions are keyed '1'..'4'
        {
            "id": "NYSEDREGENTS_1",
            "question": "What is the boiling point of water at sea level?",
            "choices": {"text": ["0 C", "50 C", "100 C", "150 C"], "label": ["1", "2", "3", "4"]},
            "answerKey": "3",
        },
        "What is the boiling point of water at sea level?",
        ["C"],
        ["0 C", "50 C", "100 C", "150 C"],
    ),
    (
        "copa",
        {
            "premise": "The man broke his toe.",
            "choice1": "He dropped a hammer on his foot.",
            "choice2": "He got a hole in his sock.",
            "question": "cause",
            "idx": 0,
            "label": 0,
        },
        '"The man broke his toe." What is the cause?',
        ["A"],
        ["He dropped a hammer on his foot.", "He got a hole in his sock."],
    ),
    (
        "piqa",
        {
            "goal": "To open a jar",
            "sol1": "hit the lid with a hammer",
            "sol2": "run the lid under hot water",
            "label": 1,
        },
        'Here is a goal: "To open a jar" How would you accomplish this goal?',
        ["B"],
        ["hit the lid with a hammer", "run the lid under hot water"],
    ),
    (
        "hellaswag",
        {
            "ind": 4,
            "activity_label": "Food and Entertaining",
            "ctx_a": "[header] How to boil an egg [step] Fill a pot with water.",
            "ctx_b": "",
            "ctx": "[header] How to boil an egg [step] Fill a pot with water. ",
            "endings": ["[step] Eat the pot.", "Dance.", "[substeps] Put the egg in.", "[title] Sleep."],
            "source_id": "wikihow~1",
            "split": "val",
            "split_type": "indomain",
            "label": "2",
        },
        "What happens next in this paragraph? How to boil an egg Fill a pot with water.",
        ["C"],
        ["Eat the pot.", "Dance.", "Put the egg in.", "Sleep."],
    ),
    (
        "winogrande",
        {
            "sentence": "The trophy didn't fit in the suitcase because _ was too big.",
            "option1": "the trophy",
            "option2": "the suitcase",
            "answer": "1",
        },
        "How does the sentence end? The trophy didn't fit in the suitcase because",
        ["A"],
        ["the trophy was too big.", "the suitcase was too big."],
    ),
    (
        "wsc",
        {
            "text": "Mark told Pete many lies about himself. He should have been more skeptical.",
            "span1_index": 2,
            "span2_index": 7,
            "span1_text": "Pete",
            "span2_text": "He",
            "idx": 0,
            "label": 1,
        },
        "Mark told Pete many lies about himself. He should have been more skeptical. "
        'Are "Pete" and "He" the same entity?',
        ["Yes"],
        [""],
    ),
    (
        "wsc273",  # the context keeps the space before the pronoun
        {
            "text": "The city councilmen refused the demonstrators a permit because they feared violence.",
            "pronoun": "they",
            "pronoun_loc": 63,
            "quote": "they feared violence",
            "quote_loc": 63,
            "options": ["The city councilmen", "The demonstrators"],
            "label": 0,
            "source": "(Winograd 1972)",
        },
        "The city councilmen refused the demonstrators a permit because ",
        ["A"],
        ["The city councilmen feared violence.", "The demonstrators feared violence."],
    ),
    (
        "rte",
        {"premise": "Dana Reeve died.", "hypothesis": "Dana Reeve is alive.", "idx": 0, "label": 1},
        'Dana Reeve died. Based on the paragraph above can we conclude that "Dana Reeve is alive."? Yes or No?',
        ["No"],
        [""],
    ),
    (
        "mnli_m",
        {"premise": "The cat sat on the mat.", "hypothesis": "An animal sat.", "label": 0, "idx": 0},
        'Premise: "The cat sat on the mat." Hypothesis: "An animal sat." '
        "Does the premise entail the hypothesis? Yes, No, or Maybe?",
        ["Yes"],
        [""],
    ),
    (
        "mnli_mm",
        {"premise": "He bought a car.", "hypothesis": "The car is red.", "label": 1, "idx": 3},
        'Premise: "He bought a car." Hypothesis: "The car is red." '
        "Does the premise entail the hypothesis? Yes, No, or Maybe?",
        ["Maybe"],
        [""],
    ),
    (
        "qnli",
        {"question": "Where is Paris?", "sentence": "Paris is in France.", "label": 0, "idx": 0},
        'Does the sentence "Paris is in France." answer the question "Where is Paris?"?',
        ["Yes"],
        [""],
    ),
    (
        "snli",
        {"premise": "A man plays a guitar.", "hypothesis": "A man is sleeping.", "label": 2},
        'If "A man plays a guitar.", does this mean that "A man is sleeping."? Yes, No, or Maybe?',
        ["No"],
        [""],
    ),
    (
        "mrpc",
        {"sentence1": "He left early.", "sentence2": "He departed ahead of time.", "label": 1, "idx": 0},
        "Here are two sentences: He left early. He departed ahead of time. Do they have the same meaning?",
        ["Yes"],
        [""],
    ),
    (
        "paws",
        {"id": 1, "sentence1": "Paris is north of Lyon.", "sentence2": "Lyon is north of Paris.", "label": 0},
        "Paris is north of Lyon. Lyon is north of Paris. Do these sentences mean the same thing?",
        ["No"],
        [""],
    ),
    (
        "qqp",  # doubled quotes become a single quote
        {"question1": 'What does ""AI"" mean?', "question2": "What is AI?", "label": 1, "idx": 0},
        '"What does \'AI\' mean?" "What is AI?" Would you say that these questions are the same?',
        ["Yes"],
        [""],
    ),
    (
        "multirc",
        {
            "paragraph": "Sam has two dogs.",
            "question": "How many dogs does Sam have?",
            "answer": "Three",
            "idx": {"paragraph": 0, "question": 0, "answer": 1},
            "label": 0,
        },
        'Sam has two dogs. Question: "How many dogs does Sam have?" Response: "Three" '
        "Does the response correctly answer the question?",
        ["No"],
        [""],
    ),
    (
        "openbookqa",
        {
            "id": "7-980",
            "question_stem": "The sun is responsible for",
            "choices": {
                "text": [
                    "puppies learning tricks",
                    "children growing up",
                    "flowers wilting in a vase",
                    "plants sprouting and blooming",
                ],
                "label": list("ABCD"),
            },
            "answerKey": "D",
            "fact1": "the sun is the source of energy for physical cycles on Earth",
            "humanScore": 1.0,
            "clarity": 2.0,
            "turkIdAnonymized": "b356d338b7",
        },
        "the sun is the source of energy for physical cycles on Earth The sun is responsible for",
        ["D"],
        [
            "puppies learning tricks",
            "children growing up",
            "flowers wilting in a vase",
            "plants sprouting and blooming",
        ],
    ),
    (
        "squad_v1",
        {
            "id": "56be4db0acb8001400a502ec",
            "title": "Super_Bowl_50",
            "context": "Denver won Super Bowl 50.",
            "question": "Who won Super Bowl 50?",
            "answers": {"text": ["Denver", "Denver Broncos"], "answer_start": [0, 0]},
        },
        "Please answer a question about the following article about Super Bowl 50: "
        "Denver won Super Bowl 50. Who won Super Bowl 50?",
        ["Denver", "Denver Broncos"],
        [""],
    ),
    (
        "boolq",
        {"question": "is the sky blue", "passage": "Sky -- The sky appears blue.", "idx": 0, "label": 1},
        "Sky -- The sky appears blue. Can we conclude that is the sky blue?",
        ["Yes"],
        [""],
    ),
    (
        "yelp",  # the hub text holds literal \" and \n escapes
        {"text": 'Great food!\\n\\nThe \\"best\\" tacos.', "label": 1},
        "Great food! The best tacos. Is this review positive or negative?",
        ["Positive"],
        [""],
    ),
    (
        "sentiment140",
        {
            "text": "my kindle is broken :(",
            "date": "Mon May 11 2009",
            "user": "u1",
            "sentiment": 0,
            "query": "kindle",
        },
        "my kindle is broken :( What is the sentiment of this tweet?",
        ["Negative"],
        [""],
    ),
    (
        "sst2",
        {"idx": 0, "sentence": "a gorgeous , witty film .", "label": 1},
        'Review: "a gorgeous , witty film ." Is this movie review sentence negative or positive?',
        ["Positive"],
        [""],
    ),
    (
        "common_gen",
        {"concept_set_idx": 0, "concepts": ["dog", "frisbee", "catch"], "target": "A dog catches a frisbee."},
        "Concepts: dog, frisbee, catch. Write a sentence that includes all these words.",
        ["A dog catches a frisbee."],
        [""],
    ),
    (
        "e2e_nlg",
        {
            "gem_id": "e2e_nlg-test-0",
            "gem_parent_id": "e2e_nlg-test-0",
            "meaning_representation": "name[Alimentum], area[city centre], familyFriendly[no]",
            "target": "Alimentum is in the city centre.",
            "references": ["Alimentum is in the city centre.", "Alimentum is not family-friendly."],
        },
        "Attributes: name = Alimentum, area = city centre, familyFriendly = no. "
        "Produce a detailed sentence about this restaurant.",
        ["Alimentum is in the city centre.", "Alimentum is not family-friendly."],
        [""],
    ),
    (
        "dart",  # bracketed pseudo-cells are removed
        {
            "gem_id": "dart-train-0",
            "gem_parent_id": "dart-train-0",
            "dart_id": 0,
            "tripleset": [["Mars Hill College", "JOINED", "1973"], ["[TABLECONTEXT]", "[TITLE]", "Colleges"]],
            "subtree_was_extended": True,
            "target_sources": ["WikiSQL_decl_sents"],
            "target": "Mars Hill College joined in 1973.",
            "references": [],
        },
        "Triple: Mars Hill College, JOINED, 1973; , , Colleges What is a sentence that describes this triple?",
        ["Mars Hill College joined in 1973."],
        [""],
    ),
    (
        "aeslc",  # whitespace and newlines collapse
        {"email_body": "Phillip,\n  Please send the\ncontract.\n", "subject_line": "Contract \n"},
        "What is the subject line for this email? Phillip, Please send the contract.",
        ["Contract"],
        [""],
    ),
    (
        "ag_news",
        {"text": "Stocks rally on Wall Street.", "label": 2},
        '"Stocks rally on Wall Street." What is this text about? World, Sports, Business, or Technology?',
        ["Business"],
        [""],
    ),
    (
        "gigaword",
        {"document": "the us dollar rose against the yen on monday .", "summary": "dollar rises against yen"},
        "Write a short summary for this text: the us dollar rose against the yen on monday .",
        ["dollar rises against yen"],
        [""],
    ),
]

# (task, row that the task drops)
DROPPED: list[tuple[str, dict[str, Any]]] = [
    (
        "arc_c",
        {
            "id": "x",
            "question": "q?",
            "choices": {"text": ["a", "b", "c"], "label": list("ABC")},
            "answerKey": "A",
        },
    ),
    (
        "arc_e",
        {
            "id": "x",
            "question": "q?",
            "choices": {"text": list("abcde"), "label": list("ABCDE")},
            "answerKey": "E",
        },
    ),
    ("gigaword", {"document": "UNK UNK wins the match .", "summary": "UNK wins"}),
    ("gigaword", {"document": "shares rose # percent .", "summary": "shares up"}),
    ("aeslc", {"email_body": "Please call me.", "subject_line": "  \n"}),
    ("aeslc", {"email_body": "word " * 257, "subject_line": "Long"}),
    ("yelp", {"text": "great " * 257, "label": 1}),
    ("yelp", {"text": "\\n\\n", "label": 0}),
    ("sentiment140", {"text": "just a tweet", "date": "d", "user": "u", "sentiment": 2, "query": "q"}),
    ("snli", {"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": -1}),
    # unlabelled hub test rows
    ("copa", {"premise": "p", "choice1": "a", "choice2": "b", "question": "effect", "idx": 0, "label": -1}),
    ("sst2", {"idx": 0, "sentence": "fine .", "label": -1}),
    ("qnli", {"question": "q?", "sentence": "s.", "label": -1, "idx": 0}),
    ("piqa", {"goal": "g", "sol1": "a", "sol2": "b", "label": -1}),
    ("winogrande", {"sentence": "A beat B as _ was strong.", "option1": "A", "option2": "B", "answer": ""}),
    ("hellaswag", {"ctx": "c", "endings": ["a", "b", "c", "d"], "label": ""}),
]

EXPECTED_METRIC = {
    **dict.fromkeys(["natural_questions", "squad_v1"], "em_f1"),
    "multirc": "f1",
    **dict.fromkeys(["common_gen", "e2e_nlg", "dart", "aeslc", "gigaword"], "rouge_l"),
}


def test_thirty_tasks_in_nine_categories() -> None:
    assert len(TASKS) == 30
    assert all(name == task.name for name, task in TASKS.items())
    assert {t.category for t in TASKS.values()} == set(CATEGORIES)
    # Listed in the paper's category order.
    order = [CATEGORIES.index(t.category) for t in TASKS.values()]
    assert order == sorted(order)
    assert Counter(t.category for t in TASKS.values())["NLI"] == 5
    assert {t.name for t in TASKS.values() if t.held_out} == HELD_OUT


def test_metrics_modes_and_label_words() -> None:
    for task in TASKS.values():
        assert task.metric == EXPECTED_METRIC.get(task.name, "accuracy"), task.name
        if task.mode == "gen":
            assert task.label_words == (), task.name
        if task.mode == "mc":
            assert task.label_words in (("A", "B"), ("A", "B", "C", "D")), task.name
    assert TASKS["multirc"].mode == "cls"
    assert TASKS["ag_news"].label_words == ("World", "Sports", "Business", "Technology")
    assert TASKS["snli"].label_words == ("Yes", "Maybe", "No")
    assert TASKS["rte"].label_words == ("Yes", "No")
    assert TASKS["boolq"].label_words == ("No", "Yes")
    assert TASKS["sst2"].label_words == ("Negative", "Positive")
    assert TASKS["mnli_m"].hf_splits["test"] == "validation_matched"
    assert TASKS["mnli_mm"].hf_splits["test"] == "validation_mismatched"


def test_every_task_has_a_hand_written_case() -> None:
    assert sorted(name for name, *_ in CASES) == sorted(TASKS)


@pytest.mark.parametrize(("name", "row", "query", "answers", "options"), CASES, ids=[c[0] for c in CASES])
def test_template_zero(name: str, row: dict[str, Any], query: str, answers: list[str], options: list[str]) -> None:
    record = TASKS[name].to_record(row, "x_0")
    assert record == {
        "query_id": "x_0",
        "query": query,
        "answers": answers,
        "options": options,
        "task_name": name,
    }


def test_answer_text_of_a_multiple_choice_item() -> None:
    name, row, *_ = CASES[3]
    task = TASKS[name]
    record = task.to_record(row, "copa_0")
    assert record is not None
    assert task.answer_text(record) == "He dropped a hammer on his foot."


def test_common_gen_test_rows_keep_every_reference() -> None:
    row = {"concept_set_idx": 1, "concepts": ["sea", "town"], "target": "r1", "references": ["r1", "r2"]}
    record = TASKS["common_gen"].to_record(row, "q")
    assert record is not None and record["answers"] == ["r1", "r2"]


@pytest.mark.parametrize(("name", "row"), DROPPED, ids=[f"{n}-{i}" for i, (n, _) in enumerate(DROPPED)])
def test_filtered_rows_are_dropped(name: str, row: dict[str, Any]) -> None:
    assert TASKS[name].to_record(row, "x_0") is None


@pytest.mark.parametrize("name", list(TASKS))
def test_missing_fields_raise_row_error(name: str) -> None:
    with pytest.raises(RowError, match=f"task {name}:"):
        TASKS[name].to_record({}, "x_0")
    _, row, *_ = next(c for c in CASES if c[0] == name)
    # Dropping any one field either leaves the row readable or raises RowError, never anything else.
    raised = 0
    for key in row:
        try:
            TASKS[name].to_record({k: v for k, v in row.items() if k != key}, "x_0")
        except RowError as exc:
            assert f"task {name}:" in str(exc)
            raised += 1
    assert raised > 0


@pytest.mark.parametrize(
    ("name", "row"),
    [
        (
            "arc_c",
            {"question": "q", "choices": {"text": list("abcd"), "label": list("ABCD")}, "answerKey": "9"},
        ),
        ("hellaswag", {"ctx": "c", "endings": ["a", "b", "c", "d"], "label": "7"}),
        ("winogrande", {"sentence": "no blank here", "option1": "a", "option2": "b", "answer": "1"}),
        ("rte", {"premise": "p", "hypothesis": "h", "label": 5}),
        ("sentiment140", {"text": "t", "sentiment": "positive"}),
        ("natural_questions", {"question": "q", "answer": []}),
    ],
)
def test_bad_values_raise_row_error(name: str, row: dict[str, Any]) -> None:
    with pytest.raises(RowError, match=f"task {name}:"):
        TASKS[name].to_record(row, "x_0")


def test_get_task() -> None:
    assert get_task("rte") is TASKS["rte"]
    with pytest.raises(KeyError, match="known tasks"):
        get_task("nope")


def test_resolve_tasks() -> None:
    assert [t.name for t in resolve_tasks("rte, copa")] == ["rte", "copa"]
    assert [t.name for t in resolve_tasks(["copa", "rte", "copa"])] == ["copa", "rte"]
    assert len(resolve_tasks("all")) == 30
    assert [t.name for t in resolve_tasks("all-available", {"rte", "copa", "other"})] == ["copa", "rte"]
    assert [t.name for t in resolve_tasks("nli")] == ["rte", "mnli_m", "mnli_mm", "qnli", "snli"]
    assert [t.name for t in resolve_tasks("Reading Comp.")] == ["multirc", "openbookqa", "squad_v1", "boolq"]
    for bad in ("rte,nope", "", "all-available"):
        with pytest.raises(ValueError):
            resolve_tasks(bad)


OFFLINE_TASKS = [name for name in TASKS if name not in NO_OFFLINE_DATA]


def _head(path: Path, n: int) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, n)]


@pytest.mark.parametrize("name", OFFLINE_TASKS)
def test_offline_rows(shared_tasks_dir: Path, name: str) -> None:
    assert len(OFFLINE_TASKS) == 25
    task_dir = shared_tasks_dir / name
    if not task_dir.is_dir():
        pytest.skip(f"no offline data for {name}")
    task = TASKS[name]
    for split, n in (("train", 200), ("test", 50)):
        rows = _head(task_dir / f"{split}.jsonl.gz", n)
        records = [task.to_record(row, f"{name}_{split}_{i}") for i, row in enumerate(rows)]
        kept = [r for r in records if r is not None]
        assert kept, f"{name}/{split}: every row was filtered out"
        for record in kept:
            assert record["query"].strip()
            answers = record["answers"]
            assert isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers)
            if task.mode in ("cls", "mc"):
                assert answers[0] in task.label_words
            if task.mode == "mc":
                assert len(record["options"]) >= 2
                assert task.label_words.index(answers[0]) < len(record["options"])
                assert task.answer_text(record)


def test_a_null_text_field_is_an_error_not_the_word_none() -> None:
    with pytest.raises(RowError, match=r"sentence.*is null"):
        TASKS["sst2"].to_record({"sentence": None, "label": 1}, "sst2_0")
