"""A data folder in the LLM-R layout: what `llmr data build` writes and what the authors released.

passages.jsonl.gz   pool items          train.jsonl.gz / test.jsonl.gz   records
bm25_train.jsonl.gz, kd_*.jsonl.gz      candidate lists (a record + doc_ids, doc_scores)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from llmr.data.jsonl import read_jsonl
from llmr.data.schema import CandidateList, Passage, Record
from llmr.tasks import TASKS

_SUFFIXES = (".jsonl.gz", ".jsonl")


def model_for(name: str) -> type[BaseModel]:
    """The row model of a file in the layout, by its name without suffix."""
    if name == "passages":
        return Passage
    if name in ("train", "test") or name.startswith(("train_", "test_")):
        return Record
    return CandidateList  # bm25_train, kd_bm25_train, kd_it2_train, candidates, scores...


class DataDir:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data folder not found: {self.root}")

    def files(self) -> dict[str, Path]:
        """name (file name without suffix) -> path, for every JSONL file in the folder."""
        found: dict[str, Path] = {}
        for path in sorted(self.root.iterdir()):
            for suffix in _SUFFIXES:
                if path.name.endswith(suffix) and not path.name.startswith("."):
                    found.setdefault(path.name[: -len(suffix)], path)
        return found

    def path(self, name: str) -> Path:
        files = self.files()
        if name not in files:
            raise FileNotFoundError(f"{self.root} has no {name}.jsonl[.gz] (found: {', '.join(files) or 'nothing'})")
        return files[name]

    def read(self, name: str) -> Iterator[BaseModel]:
        """A file's rows, validated: ids unique (pool items by id, queries by task and query_id), and every
        task a registered one (its metric, mode and labels are needed downstream)."""
        model = model_for(name)
        unique = "id" if model is Passage else "query_id"
        return read_jsonl(self.path(name), model, unique=unique, tasks=TASKS)

    def passages(self) -> Iterator[Passage]:
        return self.read("passages")  # type: ignore[return-value]

    def records(self, split: str) -> Iterator[Record]:
        return self.read(split)  # type: ignore[return-value]

    def candidates(self, name: str = "bm25_train") -> Iterator[CandidateList]:
        return self.read(name)  # type: ignore[return-value]

    def validate(self) -> dict[str, int]:
        """Read every file as every stage does (raising on the first bad line); return row counts."""
        return {name: sum(1 for _ in self.read(name)) for name in self.files()}
