"""The data contract every stage reads and writes (the LLM-R release format).

- Record: one query of a task.            query_id, query, answers, options, task_name
- Passage: one item of the example pool.  id, contents (= query + "\\n" + answer text), task_name
- CandidateList: a record plus ranked pool items for it: doc_ids, doc_scores
Unknown extra fields are kept, so files from other tools pass through unchanged.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator, model_validator


class _Row(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Record(_Row):
    query_id: str
    query: str
    answers: list[str]
    options: list[str] = [""]
    task_name: str

    @field_validator("query_id", mode="before")
    @classmethod
    def _id_as_str(cls, v: object) -> object:
        return str(v) if isinstance(v, int) else v

    @field_validator("answers")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("must hold at least one answer")
        return v


class Passage(_Row):
    id: str
    contents: str
    task_name: str

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_str(cls, v: object) -> object:
        return str(v) if isinstance(v, int) else v


class CandidateList(Record):
    doc_ids: list[str]
    doc_scores: list[float]

    @field_validator("doc_ids", mode="before")
    @classmethod
    def _ids_as_str(cls, v: object) -> object:
        # The authors' files store pool ids as strings; accept ints too.
        return [str(x) if isinstance(x, int) else x for x in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _same_length(self) -> CandidateList:
        if len(self.doc_ids) != len(self.doc_scores):
            raise ValueError(f"doc_ids has {len(self.doc_ids)} items but doc_scores has {len(self.doc_scores)}")
        return self
