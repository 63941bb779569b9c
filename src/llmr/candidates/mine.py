"""Mine candidate examples for queries: top-N pool items per query, never the query's own item.

Scopes (the paper searches the unified pool and keeps same-task items first):
- "task":    only pool items of the query's task;
- "unified": the whole pool, same-task items moved ahead of the others (each group keeps its order).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from llmr.base.progress import progress_bar
from llmr.base.runtime import Runtime
from llmr.candidates.bm25 import BM25Retriever
from llmr.candidates.dense import DenseRetriever
from llmr.data.jsonl import write_jsonl
from llmr.data.schema import CandidateList, Passage, Record, pool_contents

Scope = Literal["task", "unified"]

log = logging.getLogger(__name__)


class Retriever(Protocol):
    config: dict

    def search(
        self, queries: Sequence[str], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...


def available(records: Sequence[Record], passages: Sequence[Passage], top_n: int, scope: Scope) -> int:
    """The most candidates a list can hold: `top_n`, or fewer where the pool (a task's, with scope task)
    has fewer items."""
    if scope == "task":
        sizes = Counter(p.task_name for p in passages)
        return min(top_n, max((sizes[r.task_name] for r in records), default=0))
    return min(top_n, len(passages))


def mine_candidates(
    records: Sequence[Record],
    passages: Sequence[Passage],
    retriever: Retriever,
    top_n: int = 100,
    scope: Scope = "unified",
    batch_size: int = 512,
    on_batch: Callable[[int], None] | None = None,
) -> Iterator[CandidateList]:
    """Yield one candidate list per record, in input order."""
    if scope not in ("task", "unified"):
        raise ValueError(f"scope must be 'task' or 'unified', not {scope!r}")
    cap = available(records, passages, top_n, scope)
    if cap < top_n:  # said, not silently clamped: "top 5000" from 1,200 items would mislead
        where = "largest task's pool" if scope == "task" else "pool"
        log.warning("top_n %d is over the %s's %d items: each list holds at most %d", top_n, where, cap, cap)
    tasks = np.array([p.task_name for p in passages])
    by_contents: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(passages):
        by_contents[p.contents].append(i)
    index_of_id = {p.id: i for i, p in enumerate(passages)}
    masks: dict[str, np.ndarray] = {}
    # Ask for extra hits so dropping the query's own item(s) still leaves top_n.
    k = top_n + 8 if scope == "task" else min(len(passages), 4 * top_n + 8)
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        results: list[CandidateList | None] = [None] * len(batch)
        groups: dict[str | None, list[int]] = defaultdict(list)
        for j, rec in enumerate(batch):
            groups[rec.task_name if scope == "task" else None].append(j)
        for task, members in groups.items():
            allowed = None
            if task is not None:
                allowed = masks.setdefault(task, tasks == task)
            docs, scores = retriever.search([batch[j].query for j in members], k, allowed)
            for row, j in enumerate(members):
                rec = batch[j]
                own = set(by_contents.get(pool_contents(rec), []))
                if rec.query_id in index_of_id:
                    own.add(index_of_id[rec.query_id])
                hits = [(int(d), float(s)) for d, s in zip(docs[row], scores[row], strict=True) if int(d) not in own]
                if task is not None:
                    hits = [h for h in hits if tasks[h[0]] == task]
                else:  # same task first, stable
                    hits.sort(key=lambda h: tasks[h[0]] != rec.task_name)
                hits = hits[:top_n]
                results[j] = CandidateList(
                    **rec.model_dump(),
                    doc_ids=[passages[d].id for d, _ in hits],
                    doc_scores=[s for _, s in hits],
                )
        if on_batch:
            on_batch(len(batch))
        yield from results  # type: ignore[misc]


def load_retriever(
    name: str,
    passages: Sequence[Passage],
    n_threads: int = 0,
    index_dir: Path | str | None = None,
    runtime: Runtime = "torch",
) -> Retriever:
    """'bm25', or a dense encoder: a trained llmr retriever folder, 'all-minilm-l6-v2', a hub id (run by
    `runtime`). A dense index is saved in (and reloaded from) `index_dir`, keyed by the encoder and the pool."""
    if name == "bm25":
        return BM25Retriever(passages, n_threads=n_threads)
    return DenseRetriever(name, passages, index_dir=index_dir, runtime=runtime)


def mine_to_file(
    records: Sequence[Record], passages: Sequence[Passage], retriever: Retriever, out: Path, **options: Any
) -> int:
    """`mine_candidates` with a progress bar, written atomically to `out`; returns the number of lists."""
    with progress_bar("queries") as bar:
        task = bar.add_task("mining", total=len(records))
        return write_jsonl(
            out, mine_candidates(records, passages, retriever, **options, on_batch=lambda n: bar.advance(task, n))
        )
