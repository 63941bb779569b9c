"""The data contract every stage reads and writes (the LLM-R release format).

- Record: one query of a task.            query_id, query, answers, options, task_name
- Passage: one item of the example pool.  id, contents (= query + "\\n" + answer text), task_name
- CandidateList: a record plus ranked pool items for it: doc_ids, doc_scores
Unknown extra fields are kept, so files from other tools pass through unchanged.
A candidate the LLM is never asked about (another task's; for classification, another label's) scores PENALTY.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from llmr.tasks import TASKS, Task

PENALTY = -100.0


class _Row(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


def _not_blank(v: str) -> str:
    if not v.strip():
        raise ValueError("must not be empty")
    return v


def _id_as_str(v: object) -> object:
    return str(v) if isinstance(v, int) else v  # the authors' files hold some ids as numbers


class Record(_Row):
    query_id: str
    query: str
    answers: list[str]
    options: list[str] = [""]
    task_name: str

    _id = field_validator("query_id", mode="before")(_id_as_str)
    _texts = field_validator("query_id", "query", "task_name")(_not_blank)

    @field_validator("answers")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v or not v[0].strip():
            raise ValueError("must hold at least one non-empty answer")
        return v

    @model_validator(mode="after")
    def _fits_its_task(self) -> Record:
        """A registered task's record that scoring or evaluation would fail on fails here instead."""
        task = TASKS.get(self.task_name)
        if task is None:
            return self  # data folders refuse unknown tasks (DataDir); other files may hold any task
        if task.mode == "mc":
            if len(self.options) < 2 or not all(o.strip() for o in self.options):
                raise ValueError(f"options: a {task.name} query needs at least 2 non-empty options")
            if self.answers[0] not in task.label_words[: len(self.options)]:
                raise ValueError(f"answers: {self.answers[0]!r} is not one of its {len(self.options)} options")
        elif task.mode == "cls" and self.answers[0] not in task.label_words:
            raise ValueError(f"answers: {self.answers[0]!r} is not a {task.name} label ({', '.join(task.label_words)})")
        return self


class Passage(_Row):
    id: str
    contents: str
    task_name: str

    _id = field_validator("id", mode="before")(_id_as_str)
    _texts = field_validator("id", "contents", "task_name")(_not_blank)


class CandidateList(Record):
    # A NaN or infinite score trained an all-NaN retriever with exit 0: refused where it is read.
    model_config = ConfigDict(allow_inf_nan=False)

    doc_ids: list[str]
    doc_scores: list[float]

    @field_validator("doc_ids", mode="before")
    @classmethod
    def _ids_as_str(cls, v: object) -> object:
        # The authors' files store pool ids as strings; accept ints too.
        return [str(x) if isinstance(x, int) else x for x in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _same_length(self) -> CandidateList:
        if not self.doc_ids:
            raise ValueError("doc_ids: a candidate list needs at least one candidate")
        if len(self.doc_ids) != len(self.doc_scores):
            raise ValueError(f"doc_ids has {len(self.doc_ids)} items but doc_scores has {len(self.doc_scores)}")
        return self


def answer_text(record: Record, task: Task | None = None) -> str:
    """The text that follows the query in a pool item: the answer (multiple choice: the correct option's
    text). `task`: the record's task when it is not a registered one."""
    task = task or TASKS.get(record.task_name)
    return task.answer_text(record.model_dump()) if task else record.answers[0]


def pool_contents(record: Record, task: Task | None = None) -> str:
    """The contents of the pool item a record becomes."""
    return f"{record.query}\n{answer_text(record, task)}"


def same_label(record: Record, item: Passage) -> bool | None:
    """For a classification record and a pool item of its task: whether the item shows the record's label
    (its contents end with the label word). None when the question does not apply."""
    task = TASKS.get(record.task_name)
    if item.task_name != record.task_name or task is None or task.mode != "cls":
        return None
    return item.contents.rpartition("\n")[2] == record.answers[0]
