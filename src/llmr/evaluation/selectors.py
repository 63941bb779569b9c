"""Example selectors: which pool items to show the LLM for a query. One interface, usable alone:

    selector.select_many(queries, k) -> per query [Example(passage, score), ...], most similar first
    select(selector, query, k)       -> the same for one query

- zero:     no examples;
- random:   k items of the query's task, seeded per query;
- kmeans:   the items nearest to k cluster centres of the task's pool (the same for every query of
            the task), ordered by their similarity to the query;
- bm25, dense (any sentence-transformers encoder), llmr (a trained retriever folder): the top 40
            of the unified pool, items of the query's task first, then the top k (the paper's rule).
Each has a `fingerprint`: what decides its choices (pool, encoder weights, seed), for the eval cache.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from llmr.base.manifest import config_hash
from llmr.base.runtime import Runtime
from llmr.candidates.dense import DenseRetriever, pool_fingerprint
from llmr.candidates.mine import Retriever, load_retriever, mine_candidates
from llmr.data.schema import Passage, Record

TOP_N = 40  # the paper retrieves 40 from the unified pool before keeping k


@dataclass(frozen=True)
class Example:
    passage: Passage
    score: float


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
        encoder: str = "all-minilm-l6-v2",
        seed: int = 0,
        index_dir: Path | str | None = None,
        runtime: Runtime = "torch",
    ) -> None:

        self.passages = list(passages)
        self.rows: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(self.passages):
            self.rows[p.task_name].append(i)
        self.seed = seed
        self.dense = DenseRetriever(encoder, self.passages, index_dir=index_dir, runtime=runtime)
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


class RetrieverSelector:
    """BM25 or a dense encoder over the unified pool: top 40, same task first, then the top k."""

    def __init__(self, name: str, retriever: Retriever, passages: Sequence[Passage], fingerprint: str) -> None:
        self.name = name
        self.retriever = retriever
        self.passages = list(passages)
        self.by_id = {p.id: p for p in self.passages}
        self.fingerprint = fingerprint

    def select_many(self, queries: Sequence[Record], k: int) -> list[list[Example]]:
        mined = mine_candidates(queries, self.passages, self.retriever, top_n=max(TOP_N, k), scope="unified")
        return [
            [Example(self.by_id[d], s) for d, s in zip(c.doc_ids[:k], c.doc_scores[:k], strict=True)] for c in mined
        ]


BUILTIN = ("zero", "random", "kmeans", "bm25", "dense")


def make_selector(
    spec: str,
    passages: Sequence[Passage],
    seed: int = 0,
    index_dir: Path | str | None = None,
    runtime: Runtime = "torch",
) -> SelectionMethod:
    """A selector from a method spec: zero, random, kmeans, bm25, dense (the embedded MiniLM),
    dense:<encoder>, or <name>:<retriever folder or encoder> (e.g. llmr:runs/pipeline/retriever); dense
    encoders run in `runtime`."""
    name, _, model = spec.partition(":")
    if name == "zero":
        return ZeroShot()
    if name == "random":
        return RandomSelector(passages, seed)
    if name == "kmeans":
        return KMeansSelector(passages, model or "all-minilm-l6-v2", seed, index_dir, runtime)
    if name == "bm25":
        retriever = load_retriever("bm25", passages)
        fingerprint = config_hash({**retriever.config, "pool": pool_fingerprint(passages)})
        return RetrieverSelector("bm25", retriever, passages, fingerprint)
    if name == "dense" or model:
        dense = DenseRetriever(model or "all-minilm-l6-v2", passages, index_dir=index_dir, runtime=runtime)
        return RetrieverSelector(name, dense, passages, dense.fingerprint)
    raise ValueError(f"unknown method {spec!r}: use {', '.join(BUILTIN)}, dense:<encoder> or <name>:<retriever folder>")
