"""A data folder in the LLM-R layout: what `llmr data build` writes and what the authors released.

passages.jsonl.gz   pool items          train.jsonl.gz / test.jsonl.gz   records
bm25_train.jsonl.gz, kd_*.jsonl.gz      candidate lists (a record + doc_ids, doc_scores)
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from functools import partial
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

    def read(self, name: str, pool: Container[str] | None = None) -> Iterator[BaseModel]:
        """A file's rows, validated: ids unique (pool items by id, queries by task and query_id), and every
        task a registered one (its metric, mode and labels are needed downstream). `pool`: the pool's ids,
        which a candidate list's doc ids must be among."""
        model = model_for(name)
        unique = "id" if model is Passage else "query_id"
        check = partial(_in_pool, pool) if pool is not None and model is CandidateList else None
        return read_jsonl(self.path(name), model, unique=unique, tasks=TASKS, check=check)

    def passages(self) -> Iterator[Passage]:
        return self.read("passages")  # type: ignore[return-value]

    def records(self, split: str) -> Iterator[Record]:
        return self.read(split)  # type: ignore[return-value]

    def candidates(self, name: str = "bm25_train") -> Iterator[CandidateList]:
        return self.read(name)  # type: ignore[return-value]

    def validate(self) -> dict[str, int]:
        """Read every file as every stage does (raising on the first bad line), candidate lists' doc ids
        checked against the pool; return row counts."""
        names = self.files()
        pool = {p.id for p in self.passages()} if "passages" in names else None
        return {n: len(pool) if n == "passages" and pool else sum(1 for _ in self.read(n, pool)) for n in names}


def _in_pool(pool: Container[str], row: CandidateList) -> None:
    missing = next((d for d in row.doc_ids if d not in pool), None)
    if missing is not None:
        raise ValueError(f"doc_ids: {missing!r} is not in the pool (passages)")
