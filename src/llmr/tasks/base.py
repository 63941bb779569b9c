"""What a task is: a template that turns one dataset row into (query, answers, options)."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Mode = Literal["cls", "mc", "gen"]
Metric = Literal["accuracy", "em_f1", "f1", "rouge_l"]

# The paper's nine categories, in the order of its tables.
CATEGORIES: tuple[str, ...] = (
    "Close QA",
    "Commonsense",
    "Coreference",
    "NLI",
    "Paraphrase",
    "Reading Comp.",
    "Sentiment",
    "Data-to-text",
    "Summarize",
)

Row = Mapping[str, Any]
# A task's own preparation of a row: the template's fields plus "answer" (str or list of str)
# and, for multiple choice, "options". None means the row is filtered out.
Prepare = Callable[[Row], "dict[str, Any] | None"]


class RowError(ValueError):
    """A dataset row lacks a field, or holds a value the task cannot read."""

    def __init__(self, task: str, field: str, message: str) -> None:
        self.task, self.field = task, field
        super().__init__(f"task {task}: field {field!r}: {message}")


@dataclass(frozen=True)
class Task:
    name: str
    category: str
    metric: Metric
    mode: Mode
    template: str  # template 0 of the paper: "{field}" placeholders filled from the prepared row
    prepare: Prepare
    hf_dataset: str  # the HuggingFace dataset whose row schema `prepare` reads
    hf_config: str | None = None
    hf_splits: Mapping[str, str] = field(default_factory=lambda: {"train": "train", "test": "validation"})
    label_words: tuple[str, ...] = ()  # cls: the words to choose from; mc: option letters
    held_out: bool = False  # never a training query (qnli, piqa, wsc273, yelp)
    filters: str = ""  # what `prepare` drops, in words, for `llmr tasks show`

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"task {self.name}: unknown category {self.category!r}")
        if self.mode in ("cls", "mc") and not self.label_words:
            raise ValueError(f"task {self.name}: mode {self.mode} needs label_words")

    @property
    def template_fields(self) -> list[str]:
        return [name for _, name, _, _ in string.Formatter().parse(self.template) if name]

    def format_query(self, fields: Mapping[str, Any]) -> str:
        """A raw input as this task's query: its template filled from `fields` (sst2: `sentence`), exactly
        as the pool's queries were, so a new input and its retrieved examples read alike."""
        unknown = sorted(set(fields) - set(self.template_fields))
        missing = [f for f in self.template_fields if fields.get(f) is None]
        if unknown or missing:
            wrong = f"unknown field {unknown[0]!r}" if unknown else f"field {missing[0]!r} missing"
            raise ValueError(f"task {self.name}: {wrong}; its template takes {', '.join(self.template_fields)}")
        return self.template.format(**{f: fields[f] for f in self.template_fields})

    def to_record(self, row: Row, query_id: str) -> dict[str, Any] | None:
        """One row in the task's HF schema -> a record of the data contract, or None if filtered."""
        try:
            prepared = self.prepare(row)
        except KeyError as exc:
            raise RowError(self.name, str(exc.args[0]), "missing") from exc
        except (IndexError, TypeError, ValueError) as exc:
            raise RowError(self.name, "<row>", f"cannot read row ({type(exc).__name__}: {exc})") from exc
        if prepared is None:
            return None
        missing = [f for f in self.template_fields if f not in prepared]
        if missing:
            raise RowError(self.name, missing[0], "missing")
        null = [f for f in self.template_fields if prepared[f] is None]
        if null:  # str.format would write "None" into the query
            raise RowError(self.name, null[0], "is null")
        answer = prepared["answer"]
        answers = [answer] if isinstance(answer, str) else list(answer)
        if not answers or not all(isinstance(a, str) for a in answers):
            raise RowError(self.name, "answer", f"must be a non-empty str or list of str, got {answer!r}")
        options = list(prepared.get("options") or [""])
        if self.mode == "mc":
            if answers[0] not in self.label_words[: len(options)]:
                raise RowError(self.name, "answer", f"{answers[0]!r} is not one of {len(options)} options")
        elif self.mode == "cls" and answers[0] not in self.label_words:
            raise RowError(self.name, "answer", f"{answers[0]!r} is not a label word")
        return {
            "query_id": query_id,
            "query": self.template.format(**{f: prepared[f] for f in self.template_fields}),
            "answers": answers,
            "options": options,
            "task_name": self.name,
        }

    def answer_text(self, record: Mapping[str, Any]) -> str:
        """The text that follows the query in a pool item: for mc, the correct option's text."""
        answer = record["answers"][0]
        if self.mode == "mc":
            return record["options"][self.label_words.index(answer)]
        return answer
