"""Example selectors: which pool items to show the LLM for a query. One interface, usable alone:

    selector.select_many(queries, k) -> per query [Example(passage, score), ...], most similar first
    select(selector, query, k)       -> the same for one query

- zero:     no examples;
- random:   k items of the query's task, seeded per query;
- kmeans:   the items nearest to k cluster centres of the task's pool (the same for every query of
            the task), ordered by their similarity to the query;
- bm25, dense (any sentence-transformers encoder), llmr (a trained retriever folder): `PoolSelector`,
            the one selection core, which `llmr.Selector` (the library, the HTTP service, LangChain and
            DSPy) extends: the top k of the query's task's items (of the whole pool without a task), best
            first; `diversity` re-picks them from the top max(40, 4k) by MMR, `balance_labels` round-robins
            over their answers. (`llmr eval` used the paper's rule until issue 31: the pool's top 40, same
            task first; the two gave the same examples up to tied scores, benchmarks/RESULTS.md.)
Each has a `fingerprint`: what decides its choices (pool, encoder weights, seed, options), for the eval cache.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from llmr.base.encoders import DEFAULT_ENCODER, Encoder
from llmr.base.index import IndexKind, VectorIndex
from llmr.base.manifest import config_hash
from llmr.base.runtime import Runtime
from llmr.candidates.bm25 import BM25Retriever
from llmr.candidates.dense import DenseRetriever, pool_fingerprint
from llmr.data.schema import Passage, Record

log = logging.getLogger(__name__)

TOP_N = 40  # with diversity or balance_labels: candidates re-picked from, at least (the paper retrieves 40)


@dataclass(frozen=True)
class Example:
    passage: Passage
    score: float
    rank: int = 0  # its place by similarity among what the search found (1 = most similar); 0: no search


Where = Mapping[str, Any] | Callable[[Passage], bool]  # pool fields that must equal these values, or a test


def matches(where: Where) -> Callable[[Passage], bool]:
    if callable(where):
        return where
    return lambda p: all(getattr(p, key, None) == value for key, value in where.items())


class SelectionMethod(Protocol):
    """How one evaluated method (zero, random, bm25, a retriever, ...) picks examples; `llmr.Selector` is
    the served retriever."""

    name: str
    fingerprint: str

    def select_many(self, queries: Sequence[Record], k: int) -> list[list[Example]]: ...


def select(selector: SelectionMethod, query: Record, k: int) -> list[Example]:
    return selector.select_many([query], k)[0]


def _by_task(passages: Sequence[Passage]) -> dict[str, list[Passage]]:
    found: dict[str, list[Passage]] = defaultdict(list)
    for p in passages:
        found[p.task_name].append(p)
    return found


class ZeroShot:
    name = "zero"
    fingerprint = "zero"

    def select_many(self, queries: Sequence[Record], k: int) -> list[list[Example]]:
        return [[] for _ in queries]


class RandomSelector:
    name = "random"

    def __init__(self, passages: Sequence[Passage], seed: int = 0) -> None:
        self.pools = _by_task(passages)
        self.seed = seed
        self.fingerprint = config_hash({"random": seed, "pool": pool_fingerprint(passages)})

    def select_many(self, queries: Sequence[Record], k: int) -> list[list[Example]]:
        out = []
        for q in queries:
            pool = self.pools.get(q.task_name, [])
            chosen = random.Random(f"{self.seed}:{q.query_id}").sample(pool, min(k, len(pool)))
            out.append([Example(p, 0.0) for p in chosen])
        return out


class KMeansSelector:
    """The paper's k-means baseline: per task, the pool items closest to k centroids of its embeddings.
    The embeddings come from the dense index of the same encoder and pool (built once, or loaded)."""

    name = "kmeans"

    def __init__(
        self,
        passages: Sequence[Passage],
        encoder: str = DEFAULT_ENCODER,
        seed: int = 0,
        index_dir: Path | str | None = None,
        runtime: Runtime = "torch",
        query_max_length: int | None = None,
    ) -> None:
        self.dense = DensePool.open(encoder, passages, index_dir, runtime, query_max_length)
        self.passages, self.rows = self.dense.passages, self.dense.rows
        self.seed = seed
        self._chosen: dict[tuple[str, int], list[int]] = {}
        self.fingerprint = config_hash({"kmeans": seed, "index": self.dense.fingerprint})

    def _centres(self, task: str, k: int) -> list[int]:
        import faiss

        if (task, k) not in self._chosen:
            rows = self.rows.get(task, [])
            if len(rows) <= k:
                self._chosen[task, k] = list(rows)
            else:
                vectors = self.dense.index.vectors(rows)
                kmeans = faiss.Kmeans(
                    vectors.shape[1], k, niter=20, seed=self.seed, spherical=True, min_points_per_centroid=1
                )
                kmeans.train(vectors)
                nearest = np.argmax(kmeans.centroids @ vectors.T, axis=1)  # one pool item per centre
                self._chosen[task, k] = [rows[int(n)] for n in dict.fromkeys(nearest.tolist())]
        return self._chosen[task, k]

    def select_many(self, queries: Sequence[Record], k: int) -> list[list[Example]]:
        out = []
        for q in queries:
            chosen = self._centres(q.task_name, k)
            if not chosen:
                out.append([])
                continue
            doc_vecs = self.dense.index.vectors(chosen)
            sims = self.dense.encoder.encode_queries([q.query])[0] @ doc_vecs.T
            out.append([Example(self.passages[chosen[i]], float(sims[i])) for i in np.argsort(-sims)])
        return out


def mmr(sims: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> list[int]:
    """Maximal marginal relevance over candidates (their query similarities and vectors): positions,
    each next one maximising (1 - diversity) * its similarity to the query - diversity * its highest
    similarity to those already picked."""
    chosen: list[int] = []
    closest = np.full(len(sims), -np.inf)
    for _ in range(min(k, len(sims))):
        penalty = np.where(np.isinf(closest), 0.0, closest)
        value = (1 - diversity) * sims - diversity * penalty
        value[chosen] = -np.inf
        best = int(np.argmax(value))
        chosen.append(best)
        closest = np.maximum(closest, vectors @ vectors[best])
    return chosen


def balanced(order: Sequence[int], labels: Sequence[str], k: int) -> list[int]:
    """Round-robin over labels (by the rank of each label's best item), keeping rank order within a label."""
    queues: dict[str, list[int]] = defaultdict(list)
    for i in order:
        queues[labels[i]].append(i)
    out: list[int] = []
    while len(out) < min(k, len(order)):
        for queue in queues.values():
            if queue and len(out) < k:
                out.append(queue.pop(0))
    return out


class PoolSelector:
    """The one selection core over a pool (see the module's docstring); subclasses search it (`_encode`,
    `_search`). `choose` is what `llmr eval` (through `IndexMethod`) and `llmr.Selector` call."""

    name = "pool"

    def __init__(self, passages: Sequence[Passage] = ()) -> None:
        self.passages: list[Passage] = []
        self.rows: dict[str, list[int]] = defaultdict(list)  # each task's rows
        self._ids: set[str] = set()
        self._warned: set[tuple[str | None, int]] = set()
        self._register(passages)

    def _register(self, items: Sequence[Passage]) -> None:
        start = len(self.passages)
        for offset, p in enumerate(items):
            self.rows[p.task_name].append(start + offset)
        self.passages.extend(items)
        self._ids.update(p.id for p in items)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.rows)

    def __len__(self) -> int:
        return len(self.passages)

    def allowed(self, task: str | None, where: Where | None) -> list[int] | None:
        """The rows `where` lets through (of `task`'s, or the whole pool's); None: no filter."""
        if where is None:
            return None
        test = matches(where)
        rows = self.rows.get(task, []) if task is not None else range(len(self.passages))
        return [r for r in rows if test(self.passages[r])]

    def shortfall(self, k: int, task: str | None, where: Where | None = None) -> str | None:
        """What to tell a caller whose k is over the items `task` (or the whole pool) has. The one rule for
        the library, `llmr eval`, HTTP and the integrations: serve what there is and say so (LangChain and
        DSPy users start with a few examples; an error there would break them)."""
        allowed = self.allowed(task, where)
        have = len(allowed) if allowed is not None else len(self.rows.get(task, [])) if task else len(self.passages)
        if k <= have:
            return None
        scope = f"task {task!r}" if task is not None else "the pool"
        scope += " that pass the filter" if where is not None else ""
        return f"k = {k} is over the {have} items of {scope}: at most {have} returned"

    def _encode(self, queries: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def _search(
        self, encoded: np.ndarray, n: int, task: str | None, rows: list[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and rows of the top n (of `task`'s items, or of `rows`), best first; row -1 where fewer exist."""
        raise NotImplementedError

    def _vectors(self, rows: np.ndarray) -> np.ndarray:
        raise ValueError(f"diversity (MMR) needs a dense encoder, not {self.name}")

    def choose(
        self,
        queries: Sequence[str],
        tasks: Sequence[str | None],
        k: int,
        diversity: float | None = None,
        balance_labels: bool = False,
        exclude: Sequence[str | None] | None = None,
        where: Where | None = None,
    ) -> list[list[Example]]:
        """Each query's k examples, ranked as picked; `exclude`: a pool item id per query never shown
        (the query's own item, when training queries are evaluated); `where`: only the pool items it lets
        through are searched (a filter before the search, not after: k still come back)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        if diversity is not None and not 0.0 <= diversity <= 1.0:
            raise ValueError(f"diversity must be in [0, 1], not {diversity}")
        check_queries(queries)
        unknown = {t for t in tasks if t is not None and t not in self.rows}
        if unknown:
            raise ValueError(f"unknown task(s) {sorted(unknown)}: the pool has {', '.join(self.tasks)}")
        allowed = {task: self.allowed(task, where) for task in dict.fromkeys(tasks)}
        for task in allowed:  # warned once per task and k: eval asks thousands of times
            if (task, k) not in self._warned and (notice := self.shortfall(k, task, where)):
                self._warned.add((task, k))
                log.warning("%s", notice)
        top_n = max(TOP_N, 4 * k) if (diversity or balance_labels) else k
        encoded = self._encode(queries)
        out: list[list[Example]] = [[] for _ in queries]
        for task, members in _group(tasks).items():
            if allowed[task] == []:
                continue  # nothing passes the filter
            scores, docs = self._search(encoded[members], top_n + int(exclude is not None), task, allowed[task])
            for j, i in enumerate(members):
                own = None if exclude is None else exclude[i]
                keep = [c for c, d in enumerate(docs[j]) if d >= 0 and self.passages[d].id != own]
                found, sims = docs[j][keep][:top_n], scores[j][keep][:top_n]
                ranked = list(range(len(found)))
                if diversity:
                    ranked = mmr(sims, self._vectors(found), k, diversity)
                if balance_labels:
                    ranked = balanced(ranked, [self.passages[d].contents.rpartition("\n")[2] for d in found], k)
                out[i] = [Example(self.passages[int(found[r])], float(sims[r]), r + 1) for r in ranked[:k]]
        return out


def check_queries(queries: Sequence[str]) -> None:
    """An empty query would still get examples (those nearest to nothing): refuse it instead."""
    empty = next((i for i, q in enumerate(queries) if not q.strip()), None)
    if empty is not None:
        raise ValueError(f"empty query (query {empty}): give the text to choose examples for")


def _group(tasks: Sequence[str | None]) -> dict[str | None, list[int]]:
    rows: dict[str | None, list[int]] = defaultdict(list)
    for i, t in enumerate(tasks):
        rows[t].append(i)
    return rows


class BM25Pool(PoolSelector):
    name = "bm25"

    def __init__(self, passages: Sequence[Passage]) -> None:
        super().__init__(passages)
        self.bm25 = BM25Retriever(self.passages)
        self.tasks_of = np.array([p.task_name for p in self.passages])
        self.fingerprint = config_hash({**self.bm25.config, "pool": pool_fingerprint(self.passages)})

    def _encode(self, queries: Sequence[str]) -> np.ndarray:
        return np.array(queries, dtype=object)

    def _search(
        self, encoded: np.ndarray, n: int, task: str | None, rows: list[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if task is None and rows is None:
            docs, scores = self.bm25.search(list(encoded), n)
            return scores, docs
        if rows is None:
            mask = self.tasks_of == task
        else:
            mask = np.zeros(len(self.passages), dtype=bool)
            mask[rows] = True
        # masked items score 0 and may fill the tail: ask for a few more, keep the allowed ones
        docs, scores = self.bm25.search(list(encoded), n + 8, mask)
        out_docs, out_scores = np.full((len(encoded), n), -1), np.zeros((len(encoded), n), dtype=np.float32)
        for j in range(len(encoded)):
            mine = [c for c, d in enumerate(docs[j]) if d >= 0 and mask[d]][:n]
            out_docs[j, : len(mine)], out_scores[j, : len(mine)] = docs[j][mine], scores[j][mine]
        return out_scores, out_docs


class DensePool(PoolSelector):
    """A sentence-transformers encoder over the pool in a `VectorIndex` (exact, or HNSW); passages can be added."""

    name = "dense"

    def __init__(self, encoder: Encoder, passages: Sequence[Passage] = (), index: IndexKind = "flat") -> None:
        super().__init__()
        self.encoder = encoder
        self.kind = index
        self.index = VectorIndex(encoder.encode_documents(["dimension"]).shape[1], index)
        self._fingerprint: str | None = None
        self.add(passages)

    @classmethod
    def open(
        cls,
        model: str,
        passages: Sequence[Passage],
        index_dir: Path | str | None = None,
        runtime: Runtime = "torch",
        query_max_length: int | None = None,
    ) -> DensePool:
        """The pool encoded by `model`, exact; with `index_dir` its index is saved there (keyed by the encoder
        and the pool) and loaded again instead of encoding the pool (`DenseRetriever`, as mining does).
        `query_max_length` caps the queries only, so capped and uncapped pools share that index."""
        dense = DenseRetriever(model, passages, index_dir=index_dir, runtime=runtime, query_max_length=query_max_length)
        self = cls(dense.encoder)
        self._loaded(dense.index, passages)
        return self

    def _loaded(self, index: VectorIndex, passages: Sequence[Passage]) -> None:
        if len(passages) != len(index):
            raise ValueError(f"{len(passages)} passages but {len(index)} vectors: build the index again")
        self.index, self.kind = index, index.kind
        self._register(passages)

    def _register(self, items: Sequence[Passage]) -> None:
        super()._register(items)
        self._fingerprint = None

    @property
    def fingerprint(self) -> str:
        """What selections depend on: the encoder's weights (and runtime, and query cap) and the pool's contents."""
        if self._fingerprint is None:
            key = {"encoder": self.encoder.fingerprint, "pool": pool_fingerprint(self.passages)}
            cap = self.encoder.query_max_length
            if cap is not None and self.encoder.runtime != "torch":  # torch ignores it; uncapped keys still hold
                key["query_max_length"] = cap
            self._fingerprint = config_hash(key)
        return self._fingerprint

    def add(self, passages: Sequence[Passage]) -> int:
        """Encode and index new passages (ids must be new); returns how many were added."""
        ids = [p.id for p in passages]
        clash = next((i for i in ids if i in self._ids), None) or next(
            (i for i, n in Counter(ids).items() if n > 1), None
        )
        if clash is not None:
            raise ValueError(f"passage id {clash!r} is already in the pool")
        if not passages:
            return 0
        vectors = self.encoder.encode_documents([p.contents for p in passages])
        self._keep(passages, vectors)
        self.index.add(vectors)
        self._register(passages)
        return len(passages)

    def _keep(self, passages: Sequence[Passage], vectors: np.ndarray) -> None:
        """Called with new passages and their vectors, before they join the index (a journal hook)."""

    def _encode(self, queries: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_queries(queries)

    def _search(
        self, encoded: np.ndarray, n: int, task: str | None, rows: list[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if rows is not None:
            return self.index.search(encoded, n, rows)
        if task is None:
            return self.index.search(encoded, n)
        return self.index.search(encoded, n, self.rows[task], name=task)

    def _vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.index.vectors(rows)


class IndexMethod:
    """An evaluated method over a `PoolSelector`: each record's task scopes it (the whole pool for a task
    the pool lacks), its own pool item is never shown, and the options are part of the fingerprint."""

    def __init__(
        self, name: str, pool: PoolSelector, fingerprint: str, diversity: float | None, balance_labels: bool
    ) -> None:
        self.name, self.pool, self.pool_key = name, pool, fingerprint
        self.diversity, self.balance_labels = diversity or None, balance_labels
        options = {"diversity": self.diversity, "balance_labels": balance_labels}
        # the per-task rule (issue 31) keys outcomes apart from those of the earlier unified one
        self.fingerprint = config_hash({"select": "task-top-k", "pool": fingerprint, **options})

    def select_many(self, queries: Sequence[Record], k: int) -> list[list[Example]]:
        tasks = [q.task_name if q.task_name in self.pool.rows else None for q in queries]
        exclude = [q.query_id for q in queries]
        return self.pool.choose([q.query for q in queries], tasks, k, self.diversity, self.balance_labels, exclude)


def with_options(method: SelectionMethod, diversity: float | None, balance_labels: bool) -> SelectionMethod:
    """`method` with MMR (`diversity`) and label balance where it selects from an index (bm25, dense, a
    retriever); any other method as it is."""
    if isinstance(method, IndexMethod) and (diversity or balance_labels):
        return IndexMethod(method.name, method.pool, method.pool_key, diversity, balance_labels)
    return method


BUILTIN = ("zero", "random", "kmeans", "bm25", "dense")


def make_selector(
    spec: str,
    passages: Sequence[Passage],
    seed: int = 0,
    index_dir: Path | str | None = None,
    runtime: Runtime = "torch",
    query_max_length: int | None = None,
) -> SelectionMethod:
    """A selector from a method spec: zero, random, kmeans, bm25, dense (the embedded MiniLM),
    dense:<encoder>, or <name>:<retriever folder or encoder> (e.g. llmr:runs/pipeline/retriever); dense
    encoders run in `runtime`, their queries capped at `query_max_length` tokens (onnx/openvino);
    `with_options` adds MMR or label balance."""
    name, _, model = spec.partition(":")
    if name == "zero":
        return ZeroShot()
    if name == "random":
        return RandomSelector(passages, seed)
    if name == "kmeans":
        return KMeansSelector(passages, model or DEFAULT_ENCODER, seed, index_dir, runtime, query_max_length)
    if name == "bm25":
        bm25 = BM25Pool(passages)
        return IndexMethod("bm25", bm25, bm25.fingerprint, None, False)
    if name == "dense" or model:
        dense = DensePool.open(model or DEFAULT_ENCODER, passages, index_dir, runtime, query_max_length)
        return IndexMethod(name, dense, dense.fingerprint, None, False)
    raise ValueError(f"unknown method {spec!r}: use {', '.join(BUILTIN)}, dense:<encoder> or <name>:<retriever folder>")
