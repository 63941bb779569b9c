"""`llmr data build`: task rows -> the three LLM-R files (passages, train, test) + a manifest.

- passages.jsonl.gz: the unified example pool, every task's train records (id = the record's query_id),
                    at most `max_pool` per task (a seeded sample) to bound encoding and index costs
- train.jsonl.gz:    training queries, at most `max_train` per task, seeded; held-out tasks excluded
- test.jsonl.gz:     evaluation queries, at most `max_test` per task, seeded
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmr.base.manifest import write_manifest
from llmr.data.jsonl import DataFileError, write_jsonl
from llmr.data.schema import Passage, Record, pool_contents
from llmr.data.sources import SPLITS, RowSource
from llmr.tasks import RowError, Task, resolve_tasks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildConfig:
    tasks: tuple[str, ...]
    source: str
    max_train: int | None = 30_000  # the paper's cap on training queries per task
    max_test: int | None = None
    max_pool: int | None = None  # pool items per task; None = every train record (the paper)
    seed: int = 42


def task_records(source: RowSource, task: Task, split: str) -> Iterator[Record]:
    """Every row of one task split as a record; rows a task filters out are counted, not kept."""
    kept = dropped = 0
    for line, row in enumerate(source.rows(task, split), start=1):
        try:
            rec = task.to_record(row, query_id=f"{task.name}_{split}_{kept}")
        except RowError as exc:
            raise DataFileError(source.location(task, split), line, exc.field, str(exc)) from None
        if rec is None:
            dropped += 1
            continue
        kept += 1
        yield Record.model_validate(rec)
    if dropped:
        log.info("%s/%s: %d rows filtered out by the task's rules", task.name, split, dropped)


def sample(records: list[Record], cap: int | None, seed: int, key: str) -> list[Record]:
    """At most `cap` records, kept in source order: those whose ids hash lowest under (seed, key).

    Nested by construction: a smaller sample of the same records, or of a sample of them, is a subset
    of a larger one, so e.g. the queries the LLM scores are a subset of those the teacher scores."""
    if cap is None or len(records) <= cap:
        return records

    def rank(i: int) -> bytes:
        return hashlib.sha256(f"{seed}:{key}:{records[i].query_id}".encode()).digest()

    chosen = sorted(sorted(range(len(records)), key=rank)[:cap])
    return [records[i] for i in chosen]


def select_records(records: Sequence[Record], tasks: str | None, max_per_task: int, seed: int) -> list[Record]:
    """Records of the chosen tasks, at most `max_per_task` of each (seeded sample, source order; 0 = all)."""
    by_task: dict[str, list[Record]] = {}
    for r in records:
        by_task.setdefault(r.task_name, []).append(r)
    names = [t.name for t in resolve_tasks(tasks, available=set(by_task))] if tasks else list(by_task)
    return [r for n in names for r in sample(by_task.get(n, []), max_per_task or None, seed, f"{n}:select")]


def pool_item(task: Task, record: Record) -> Passage:
    return Passage(id=record.query_id, contents=pool_contents(record, task), task_name=task.name)


def build(source: RowSource, tasks: Sequence[Task], out_dir: Path | str, config: BuildConfig) -> dict[str, Any]:
    """Write the three files and manifest.json to `out_dir`; return per-task counts."""
    out_dir = Path(out_dir)
    passages: list[Passage] = []
    train: list[Record] = []
    test: list[Record] = []
    counts: dict[str, dict[str, int]] = {}
    fingerprints: dict[str, str] = {}
    available = source.available()
    for task in tasks:
        if task.name not in available:
            raise FileNotFoundError(f"source {source.describe()} has no rows for task {task.name}")
        train_all = list(task_records(source, task, "train")) if source.has(task, "train") else []
        pool = sample(train_all, config.max_pool, config.seed, f"{task.name}:pool")
        passages.extend(pool_item(task, r) for r in pool)
        task_train = [] if task.held_out else sample(train_all, config.max_train, config.seed, f"{task.name}:train")
        task_test = []
        if source.has(task, "test"):
            task_test = sample(
                list(task_records(source, task, "test")), config.max_test, config.seed, f"{task.name}:test"
            )
        train.extend(task_train)
        test.extend(task_test)
        counts[task.name] = {"pool": len(pool), "train": len(task_train), "test": len(task_test)}
        for split in SPLITS:
            if source.has(task, split):
                fingerprints[f"{task.name}/{split}"] = source.fingerprint(task, split)
        log.info("%s: pool %d, train %d, test %d", task.name, len(train_all), len(task_train), len(task_test))
    outputs = [out_dir / "passages.jsonl.gz", out_dir / "train.jsonl.gz", out_dir / "test.jsonl.gz"]
    for path, rows in zip(outputs, (passages, train, test), strict=True):
        write_jsonl(path, rows)
    write_manifest(
        out_dir / "manifest.json",
        "data.build",
        asdict(config),
        inputs=fingerprints,
        outputs=outputs,
        source=source.describe(),
        counts=counts,
    )
    return counts
