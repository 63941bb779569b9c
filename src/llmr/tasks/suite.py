"""The 30 LLM-R tasks: template 0 of each, its label words, and how a HuggingFace row becomes its fields.

Templates, label words, answer logic and filters follow the authors' task definitions
(microsoft/LMOps, llm_retriever/src/tasks). `hf_dataset` is the hub id that loads today; the
reference code used the legacy short names (e.g. "super_glue", "ai2_arc").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from .base import Prepare, Row, Task

LETTERS = ("A", "B", "C", "D")
YES_NO = ("Yes", "No")
NO_YES = ("No", "Yes")
NLI3 = ("Yes", "Maybe", "No")
SENTIMENT = ("Negative", "Positive")
TOPICS = ("World", "Sports", "Business", "Technology")

Prepared = dict[str, Any] | None


def _label(value: Any) -> int | None:
    """A class index, or None for an unlabelled row (-1 on the hub; '' in hellaswag/winogrande test)."""
    if value == "":
        return None
    label = int(value)
    return None if label < 0 else label


def _letter(index: int, n_options: int) -> str:
    if not 0 <= index < min(n_options, len(LETTERS)):
        raise ValueError(f"answer index {index} is out of range for {n_options} options")
    return LETTERS[index]


def _key_letter(key: Any) -> str:
    """An answer key that is a letter, or a 0-based digit, as a letter."""
    key = str(key).strip().upper()
    return key if key in LETTERS else _letter(int(key), len(LETTERS))


def _references(row: Row) -> list[str]:
    """All references where the row carries them (GEM test/validation rows), else the one target."""
    refs = row.get("references") or []
    return list(refs) if refs else [row["target"]]


def _words(text: str) -> list[str]:
    return text.split()


def _classify(words: tuple[str, ...], fields: Mapping[str, str], clean: Callable[[str], str] = str) -> Prepare:
    """Template field <- row key, answer = words[label]; `clean` is applied to every field."""

    def prepare(row: Row) -> Prepared:
        label = _label(row["label"])
        if label is None:
            return None
        texts = {name: None if row[key] is None else clean(row[key]) for name, key in fields.items()}  # null: an error
        return {**texts, "answer": words[label]}

    return prepare


def _two_options(fields: Mapping[str, str], option_keys: tuple[str, str]) -> Prepare:
    """Two-way multiple choice: options from two row keys, answer = letter of `label`."""

    def prepare(row: Row) -> Prepared:
        label = _label(row["label"])
        if label is None:
            return None
        return {
            **{name: row[key] for name, key in fields.items()},
            "options": [row[k] for k in option_keys],
            "answer": _letter(label, 2),
        }

    return prepare


# ---- Close QA
def _nq(row: Row) -> Prepared:
    return {"question": row["question"] + "?", "answer": list(row["answer"])}


def _arc(row: Row) -> Prepared:
    options = list(row["choices"]["text"])
    if len(options) != 4:
        return None
    key = str(row["answerKey"]).strip()
    # NY Regents questions are keyed '1'..'4'.
    answer = key if key in LETTERS else _letter(int(key) - 1, len(options))
    return {"question": row["question"], "options": options, "answer": answer}


# ---- Commonsense
_BRACKETED = re.compile(r"\[.*?\]\s")  # WikiHow markup in hellaswag: "[header] ", "[step] "


def _hellaswag(row: Row) -> Prepared:
    label = _label(row["label"])
    if label is None:
        return None
    options = [_BRACKETED.sub("", ending) for ending in row["endings"]]
    return {
        "context": _BRACKETED.sub("", row["ctx"]).strip(),
        "options": options,
        "answer": _letter(label, len(options)),
    }


# ---- Coreference
def _winogrande(row: Row) -> Prepared:
    sentence: str = row["sentence"]
    cut = sentence.index("_")
    rest = sentence[cut + 1 :]
    label = _label(row["answer"])  # '1' / '2'; '' on the unlabelled test split
    if label is None:
        return None
    return {
        "context": sentence[:cut].strip(),
        "options": [row["option1"] + rest, row["option2"] + rest],
        "answer": _letter(label - 1, 2),
    }


def _wsc273(row: Row) -> Prepared:
    text: str = row["text"]
    loc: int = row["pronoun_loc"]
    rest = text[loc + len(row["pronoun"]) :]
    # The context keeps its trailing space, as in the reference.
    return {
        "context": text[:loc],
        "options": [option + rest for option in row["options"]],
        "answer": _letter(int(row["label"]), 2),
    }


# ---- Reading comprehension
def _openbookqa(row: Row) -> Prepared:
    return {
        "fact": row["fact1"],
        "question": row["question_stem"],
        "options": list(row["choices"]["text"]),
        "answer": _key_letter(row["answerKey"]),
    }


def _squad(row: Row) -> Prepared:
    return {
        "title": row["title"].replace("_", " "),
        "context": row["context"],
        "question": row["question"],
        "answer": list(row["answers"]["text"]),
    }


# ---- Sentiment
def _yelp(row: Row) -> Prepared:
    # The hub text holds literal backslash escapes: drop \" and turn \n\n into a space.
    text = row["text"].replace('\\"', "").replace("\\n\\n", " ")
    label = _label(row["label"])
    if label is None or not 0 < len(_words(text)) <= 256:
        return None
    return {"text": text, "answer": SENTIMENT[label]}


def _sentiment140(row: Row) -> Prepared:
    sentiment = int(row["sentiment"])
    if sentiment not in (0, 4):
        return None
    return {"text": row["text"], "answer": SENTIMENT[sentiment // 4]}


# ---- Data-to-text
def _common_gen(row: Row) -> Prepared:
    return {"concepts": ", ".join(row["concepts"]), "answer": _references(row)}


def _e2e_nlg(row: Row) -> Prepared:
    mr = row["meaning_representation"].replace("[", " = ").replace("]", "")
    return {"meaning_representation": mr, "answer": _references(row)}


_CELL_TAG = re.compile(r"\[(.*?)\]")  # DART pseudo-cells such as [TABLECONTEXT], [TITLE]


def _dart(row: Row) -> Prepared:
    tripleset = "; ".join(", ".join(triple) for triple in row["tripleset"])
    return {"tripleset": _CELL_TAG.sub("", tripleset), "answer": _references(row)}


# ---- Summarize
def _aeslc(row: Row) -> Prepared:
    body = " ".join(_words(row["email_body"]))
    subject = " ".join(_words(row["subject_line"]))
    if not (0 < len(_words(body)) <= 256 and 0 < len(_words(subject)) <= 256):
        return None
    return {"body": body, "answer": subject}


def _gigaword(row: Row) -> Prepared:
    document: str = row["document"]
    summary: str = row["summary"]
    if any(bad in document + summary for bad in ("UNK", "#")):
        return None
    return {"text": document, "answer": summary}


def _splits(test: str, train: str | None = "train") -> dict[str, str]:
    return {"train": train, "test": test} if train is not None else {"test": test}


_GLUE = "nyu-mll/glue"
_SUPER_GLUE = "aps/super_glue"
_MNLI_TEMPLATE = (
    'Premise: "{premise}" Hypothesis: "{hypothesis}" Does the premise entail the hypothesis? Yes, No, or Maybe?'
)

NATURAL_QUESTIONS = Task(
    name="natural_questions",
    category="Close QA",
    metric="em_f1",
    mode="gen",
    template="Question: {question} Answer:",
    prepare=_nq,
    hf_dataset="google-research-datasets/nq_open",
    hf_splits=_splits("validation"),
)
ARC_C = Task(
    name="arc_c",
    category="Close QA",
    metric="accuracy",
    mode="mc",
    template="{question}",
    prepare=_arc,
    label_words=LETTERS,
    hf_dataset="allenai/ai2_arc",
    hf_config="ARC-Challenge",
    hf_splits=_splits("test"),
    filters="drops questions that do not have exactly 4 choices",
)
ARC_E = Task(
    name="arc_e",
    category="Close QA",
    metric="accuracy",
    mode="mc",
    template="{question}",
    prepare=_arc,
    label_words=LETTERS,
    hf_dataset="allenai/ai2_arc",
    hf_config="ARC-Easy",
    hf_splits=_splits("test"),
    filters="drops questions that do not have exactly 4 choices",
)
COPA = Task(
    name="copa",
    category="Commonsense",
    metric="accuracy",
    mode="mc",
    template='"{premise}" What is the {question}?',
    prepare=_two_options({"premise": "premise", "question": "question"}, ("choice1", "choice2")),
    label_words=LETTERS[:2],
    hf_dataset=_SUPER_GLUE,
    hf_config="copa",
    hf_splits=_splits("validation"),
)
PIQA = Task(
    name="piqa",
    category="Commonsense",
    metric="accuracy",
    mode="mc",
    template='Here is a goal: "{goal}" How would you accomplish this goal?',
    prepare=_two_options({"goal": "goal"}, ("sol1", "sol2")),
    label_words=LETTERS[:2],
    hf_dataset="ybisk/piqa",
    hf_splits=_splits("validation"),
    held_out=True,
)
HELLASWAG = Task(
    name="hellaswag",
    category="Commonsense",
    metric="accuracy",
    mode="mc",
    template="What happens next in this paragraph? {context}",
    prepare=_hellaswag,
    label_words=LETTERS,
    hf_dataset="Rowan/hellaswag",
    hf_splits=_splits("validation"),
)
WINOGRANDE = Task(
    name="winogrande",
    category="Coreference",
    metric="accuracy",
    mode="mc",
    template="How does the sentence end? {context}",
    prepare=_winogrande,
    label_words=LETTERS[:2],
    hf_dataset="allenai/winogrande",
    hf_config="winogrande_xl",
    hf_splits=_splits("validation"),
)
WSC = Task(
    name="wsc",
    category="Coreference",
    metric="accuracy",
    mode="cls",
    template='{context} Are "{text1}" and "{text2}" the same entity?',
    prepare=_classify(NO_YES, {"context": "text", "text1": "span1_text", "text2": "span2_text"}),
    label_words=NO_YES,
    hf_dataset=_SUPER_GLUE,
    hf_config="wsc",
    hf_splits=_splits("validation"),
)
WSC273 = Task(
    name="wsc273",
    category="Coreference",
    metric="accuracy",
    mode="mc",
    template="{context}",
    prepare=_wsc273,
    label_words=LETTERS[:2],
    hf_dataset="ErnestSDavis/winograd_wsc",
    hf_config="wsc273",
    hf_splits=_splits("test", train=None),
    held_out=True,
)
RTE = Task(
    name="rte",
    category="NLI",
    metric="accuracy",
    mode="cls",
    template='{premise} Based on the paragraph above can we conclude that "{hypothesis}"? Yes or No?',
    prepare=_classify(YES_NO, {"premise": "premise", "hypothesis": "hypothesis"}),
    label_words=YES_NO,
    hf_dataset=_SUPER_GLUE,
    hf_config="rte",
    hf_splits=_splits("validation"),
)
# mnli_m / mnli_mm share the glue/mnli train split as their retrieval corpus.
MNLI_M = Task(
    name="mnli_m",
    category="NLI",
    metric="accuracy",
    mode="cls",
    template=_MNLI_TEMPLATE,
    prepare=_classify(NLI3, {"premise": "premise", "hypothesis": "hypothesis"}),
    label_words=NLI3,
    hf_dataset=_GLUE,
    hf_config="mnli",
    hf_splits=_splits("validation_matched"),
)
MNLI_MM = Task(
    name="mnli_mm",
    category="NLI",
    metric="accuracy",
    mode="cls",
    template=_MNLI_TEMPLATE,
    prepare=_classify(NLI3, {"premise": "premise", "hypothesis": "hypothesis"}),
    label_words=NLI3,
    hf_dataset=_GLUE,
    hf_config="mnli",
    hf_splits=_splits("validation_mismatched"),
)
QNLI = Task(
    name="qnli",
    category="NLI",
    metric="accuracy",
    mode="cls",
    template='Does the sentence "{sentence}" answer the question "{question}"?',
    prepare=_classify(YES_NO, {"sentence": "sentence", "question": "question"}),
    label_words=YES_NO,
    hf_dataset=_GLUE,
    hf_config="qnli",
    hf_splits=_splits("validation"),
    held_out=True,
)
SNLI = Task(
    name="snli",
    category="NLI",
    metric="accuracy",
    mode="cls",
    template='If "{premise}", does this mean that "{hypothesis}"? Yes, No, or Maybe?',
    prepare=_classify(NLI3, {"premise": "premise", "hypothesis": "hypothesis"}),
    label_words=NLI3,
    hf_dataset="stanfordnlp/snli",
    hf_splits=_splits("test"),
    filters="drops pairs without a gold label (label -1)",
)
MRPC = Task(
    name="mrpc",
    category="Paraphrase",
    metric="accuracy",
    mode="cls",
    template="Here are two sentences: {sentence1} {sentence2} Do they have the same meaning?",
    prepare=_classify(NO_YES, {"sentence1": "sentence1", "sentence2": "sentence2"}),
    label_words=NO_YES,
    hf_dataset=_GLUE,
    hf_config="mrpc",
    hf_splits=_splits("validation"),
)
PAWS = Task(
    name="paws",
    category="Paraphrase",
    metric="accuracy",
    mode="cls",
    template="{sentence1} {sentence2} Do these sentences mean the same thing?",
    prepare=_classify(NO_YES, {"sentence1": "sentence1", "sentence2": "sentence2"}),
    label_words=NO_YES,
    hf_dataset="google-research-datasets/paws",
    hf_config="labeled_final",
    hf_splits=_splits("test"),
)
QQP = Task(
    name="qqp",
    category="Paraphrase",
    metric="accuracy",
    mode="cls",
    template='"{question1}" "{question2}" Would you say that these questions are the same?',
    prepare=_classify(
        NO_YES, {"question1": "question1", "question2": "question2"}, clean=lambda s: s.replace('""', "'")
    ),
    label_words=NO_YES,
    hf_dataset=_GLUE,
    hf_config="qqp",
    hf_splits=_splits("validation"),
)
MULTIRC = Task(
    name="multirc",
    category="Reading Comp.",
    metric="f1",
    mode="cls",
    template=(
        '{paragraph} Question: "{question}" Response: "{response}" Does the response correctly answer the question?'
    ),
    prepare=_classify(NO_YES, {"paragraph": "paragraph", "question": "question", "response": "answer"}),
    label_words=NO_YES,
    hf_dataset=_SUPER_GLUE,
    hf_config="multirc",
    hf_splits=_splits("validation"),
)
OPENBOOKQA = Task(
    name="openbookqa",
    category="Reading Comp.",
    metric="accuracy",
    mode="mc",
    template="{fact} {question}",
    prepare=_openbookqa,
    label_words=LETTERS,
    hf_dataset="allenai/openbookqa",
    hf_config="additional",
    hf_splits=_splits("test"),
)
SQUAD_V1 = Task(
    name="squad_v1",
    category="Reading Comp.",
    metric="em_f1",
    mode="gen",
    template="Please answer a question about the following article about {title}: {context} {question}",
    prepare=_squad,
    hf_dataset="rajpurkar/squad",
    hf_splits=_splits("validation"),
)
BOOLQ = Task(
    name="boolq",
    category="Reading Comp.",
    metric="accuracy",
    mode="cls",
    template="{text} Can we conclude that {question}?",
    prepare=_classify(NO_YES, {"text": "passage", "question": "question"}),
    label_words=NO_YES,
    hf_dataset=_SUPER_GLUE,
    hf_config="boolq",
    hf_splits=_splits("validation"),
)
YELP = Task(
    name="yelp",
    category="Sentiment",
    metric="accuracy",
    mode="cls",
    template="{text} Is this review positive or negative?",
    prepare=_yelp,
    label_words=SENTIMENT,
    hf_dataset="fancyzhx/yelp_polarity",
    hf_splits=_splits("test"),
    held_out=True,
    filters='drops reviews with no words or more than 256 words (after removing \\" and \\n\\n escapes)',
)
SENTIMENT140 = Task(
    name="sentiment140",
    category="Sentiment",
    metric="accuracy",
    mode="cls",
    template="{text} What is the sentiment of this tweet?",
    prepare=_sentiment140,
    label_words=SENTIMENT,
    hf_dataset="stanfordnlp/sentiment140",
    hf_splits=_splits("test"),
    filters="keeps only tweets with sentiment 0 (negative) or 4 (positive)",
)
SST2 = Task(
    name="sst2",
    category="Sentiment",
    metric="accuracy",
    mode="cls",
    template='Review: "{sentence}" Is this movie review sentence negative or positive?',
    prepare=_classify(SENTIMENT, {"sentence": "sentence"}),
    label_words=SENTIMENT,
    hf_dataset="stanfordnlp/sst2",
    hf_splits=_splits("validation"),
)
COMMON_GEN = Task(
    name="common_gen",
    category="Data-to-text",
    metric="rouge_l",
    mode="gen",
    template="Concepts: {concepts}. Write a sentence that includes all these words.",
    prepare=_common_gen,
    hf_dataset="allenai/common_gen",
    hf_splits=_splits("validation"),
)
E2E_NLG = Task(
    name="e2e_nlg",
    category="Data-to-text",
    metric="rouge_l",
    mode="gen",
    template="Attributes: {meaning_representation}. Produce a detailed sentence about this restaurant.",
    prepare=_e2e_nlg,
    hf_dataset="GEM/e2e_nlg",
    hf_splits=_splits("test"),
)
DART = Task(
    name="dart",
    category="Data-to-text",
    metric="rouge_l",
    mode="gen",
    template="Triple: {tripleset} What is a sentence that describes this triple?",
    prepare=_dart,
    hf_dataset="GEM/dart",
    hf_splits=_splits("validation"),
)
AESLC = Task(
    name="aeslc",
    category="Summarize",
    metric="rouge_l",
    mode="gen",
    template="What is the subject line for this email? {body}",
    prepare=_aeslc,
    hf_dataset="Yale-LILY/aeslc",
    hf_splits=_splits("test"),
    filters="drops emails whose body or subject has no words or more than 256 words",
)
AG_NEWS = Task(
    name="ag_news",
    category="Summarize",
    metric="accuracy",
    mode="cls",
    template='"{text}" What is this text about? World, Sports, Business, or Technology?',
    prepare=_classify(TOPICS, {"text": "text"}),
    label_words=TOPICS,
    hf_dataset="fancyzhx/ag_news",
    hf_splits=_splits("test"),
)
GIGAWORD = Task(
    name="gigaword",
    category="Summarize",
    metric="rouge_l",
    mode="gen",
    template="Write a short summary for this text: {text}",
    prepare=_gigaword,
    hf_dataset="Harvard/gigaword",
    hf_splits=_splits("test"),
    filters="drops pairs whose document or summary contains 'UNK' or '#'",
)

# In the paper's category order (base.CATEGORIES), tasks within a category as the reference lists them.
TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        NATURAL_QUESTIONS,
        ARC_C,
        ARC_E,
        COPA,
        PIQA,
        HELLASWAG,
        WINOGRANDE,
        WSC,
        WSC273,
        RTE,
        MNLI_M,
        MNLI_MM,
        QNLI,
        SNLI,
        MRPC,
        PAWS,
        QQP,
        MULTIRC,
        OPENBOOKQA,
        SQUAD_V1,
        BOOLQ,
        YELP,
        SENTIMENT140,
        SST2,
        COMMON_GEN,
        E2E_NLG,
        DART,
        AESLC,
        AG_NEWS,
        GIGAWORD,
    )
}
