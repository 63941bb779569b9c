"""Where task rows come from. Every source yields rows in the HF schema of the task's dataset.

- a folder laid out as `<dir>/<task>/<split>.jsonl[.gz]` (the offline copy in ../shared/data, or
  rows you exported yourself);
- the Hugging Face hub through `datasets` (needs a network or a filled HF cache).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from llmr.base.files import file_fingerprint
from llmr.data.jsonl import read_jsonl
from llmr.tasks import TASKS, Task

SPLITS = ("train", "test")


class RowSource(Protocol):
    def available(self) -> set[str]:
        """Names of the tasks this source has rows for."""

    def has(self, task: Task, split: str) -> bool:
        """Whether the task has this split here (wsc273, for one, has no train split)."""

    def rows(self, task: Task, split: str) -> Iterator[dict[str, Any]]: ...

    def fingerprint(self, task: Task, split: str) -> str: ...

    def location(self, task: Task, split: str) -> str:
        """Where one task split's rows are read from, for error messages."""

    def describe(self) -> str: ...


class DirectorySource:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"task data folder not found: {self.root}")

    def file(self, task: Task, split: str) -> Path | None:
        for suffix in (".jsonl.gz", ".jsonl"):
            path = self.root / task.name / f"{split}{suffix}"
            if path.is_file():
                return path
        return None

    def available(self) -> set[str]:
        return {p.parent.name for split in SPLITS for p in self.root.glob(f"*/{split}.jsonl*")}

    def has(self, task: Task, split: str) -> bool:
        return self.file(task, split) is not None

    def rows(self, task: Task, split: str) -> Iterator[dict[str, Any]]:
        path = self.file(task, split)
        if path is None:
            raise FileNotFoundError(f"no {split} rows for task {task.name} under {self.root / task.name}")
        return read_jsonl(path)

    def fingerprint(self, task: Task, split: str) -> str:
        path = self.file(task, split)
        return file_fingerprint(path) if path else "missing"

    def location(self, task: Task, split: str) -> str:
        return str(self.file(task, split) or self.root / task.name / f"{split}.jsonl.gz")

    def describe(self) -> str:
        return str(self.root.resolve())


class HubSource:
    """Rows from `datasets.load_dataset(task.hf_dataset, task.hf_config, split=...)`."""

    def available(self) -> set[str]:

        return set(TASKS)

    def has(self, task: Task, split: str) -> bool:
        return split in task.hf_splits

    def _load(self, task: Task, split: str) -> Any:
        try:
            import datasets
        except ImportError as exc:  # pragma: no cover - datasets is a core dependency
            raise ImportError("the hub source needs `datasets`: pip install datasets") from exc
        return datasets.load_dataset(task.hf_dataset, task.hf_config, split=task.hf_splits[split])

    def rows(self, task: Task, split: str) -> Iterator[dict[str, Any]]:
        return iter(self._load(task, split))

    def fingerprint(self, task: Task, split: str) -> str:
        ds = self._load(task, split)
        return f"{self.location(task, split)}@{ds._fingerprint}"

    def location(self, task: Task, split: str) -> str:
        return f"hf:{task.hf_dataset}/{task.hf_config}/{task.hf_splits[split]}"

    def describe(self) -> str:
        return "hub"


def default_shared_dir() -> Path | None:
    """The offline task copy: $LLMR_SHARED_DATA, else `shared/data/llmr-tasks` beside a parent folder."""
    env = os.environ.get("LLMR_SHARED_DATA")
    if env:
        if not Path(env).is_dir():
            raise FileNotFoundError(f"LLMR_SHARED_DATA={env}: no such folder")
        return Path(env)
    for base in (Path.cwd(), *Path.cwd().parents):
        candidate = base / "shared" / "data" / "llmr-tasks"
        if candidate.is_dir():
            return candidate
    return None


SAMPLES_DIR = Path(__file__).parent / "samples"  # a few hand-written rows of five tasks


class StackedSource:
    """Several sources as one: each task is read from the first source that has it (extra task
    folders beside the shared copy, e.g. the paper's held-out tasks exported by hand)."""

    def __init__(self, sources: list[RowSource]) -> None:
        self.sources = sources

    def _owner(self, task: Task) -> RowSource:
        for source in self.sources:
            if task.name in source.available():
                return source
        return self.sources[0]

    def available(self) -> set[str]:
        return set().union(*(s.available() for s in self.sources))

    def has(self, task: Task, split: str) -> bool:
        return self._owner(task).has(task, split)

    def rows(self, task: Task, split: str) -> Iterator[dict[str, Any]]:
        return self._owner(task).rows(task, split)

    def fingerprint(self, task: Task, split: str) -> str:
        return self._owner(task).fingerprint(task, split)

    def location(self, task: Task, split: str) -> str:
        return self._owner(task).location(task, split)

    def describe(self) -> str:
        return ",".join(s.describe() for s in self.sources)


def open_source(spec: str) -> RowSource:
    """`hub`, `shared` (the offline copy), `samples` (shipped with llmr), `auto` (shared if found,
    else samples), a folder path, or several of these comma-separated (first one with a task wins)."""
    if "," in spec:
        return StackedSource([open_source(part.strip()) for part in spec.split(",") if part.strip()])
    if spec == "hub":
        return HubSource()
    if spec == "samples" or (spec == "auto" and default_shared_dir() is None):
        return DirectorySource(SAMPLES_DIR)
    if spec in ("shared", "auto"):
        found = default_shared_dir()
        if found is None:
            raise FileNotFoundError(
                f"no offline task data: looked for shared/data/llmr-tasks in {Path.cwd()} and its parents; "
                "set LLMR_SHARED_DATA=/path/to/llmr-tasks once (e.g. in your shell profile), "
                "or give the folder as the source"
            )
        return DirectorySource(found)
    return DirectorySource(spec)
