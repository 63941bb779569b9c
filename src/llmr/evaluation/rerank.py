"""Methods that rank with more than an index: precomputed candidate lists, and the LLM at test time.

- `<name>:<file.jsonl[.gz]>`: each query's top k of a candidate-list file, by `doc_scores` (`llmr score`
  output, an oracle, the authors' released files);
- `cone`, `cone:<encoder or retriever folder>`: TopK+ConE. The top 16 same-task candidates (BM25 and
  dense interleaved, or that retriever's) reranked by the LLM's mean log p(query | candidate): the
  examples that most lower the LLM's surprise at the test input. No gold answer is needed, so it runs
  at test time, at the cost of 16 LLM passes per query.
Anything else is an index selector (`make_selector`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from llmr.base.encoders import resolve_encoder
from llmr.base.files import cache_dir, file_fingerprint
from llmr.base.manifest import config_hash
from llmr.base.runtime import Runtime
from llmr.candidates.dense import pool_fingerprint
from llmr.data.jsonl import read_jsonl
from llmr.data.schema import CandidateList, Passage, Record
from llmr.distributed.engine import Engine
from llmr.evaluation.selectors import BUILTIN, Example, SelectionMethod, make_selector
from llmr.llm.base import LLM, Score
from llmr.scoring.cache import ScoreCache, pair_key
from llmr.scoring.feedback import query_pair

RERANK_TOP_N = 16  # candidates the LLM reranks per query


class RankedSelector:
    """The top k of each query's candidate list in a file, highest `doc_scores` first (ties: file order)."""

    def __init__(self, name: str, path: Path | str, passages: Sequence[Passage]) -> None:
        self.name = name
        self.by_id = {p.id: p for p in passages}
        self.lists = {c.query_id: c for c in read_jsonl(path, CandidateList)}
        self.path = path
        self.fingerprint = config_hash({"ranked": file_fingerprint(path), "pool": pool_fingerprint(passages)})

    def select_many(self, queries: Sequence[Record], k: int) -> list[list[Example]]:
        out = []
        for q in queries:
            found = self.lists.get(q.query_id)
            if found is None:
                raise KeyError(f"{self.path}: no candidate list for query {q.query_id!r}")
            order = sorted(range(len(found.doc_ids)), key=lambda i: -found.doc_scores[i])[:k]
            out.append([Example(self.by_id[found.doc_ids[i]], found.doc_scores[i]) for i in order])
        return out


class Interleaved:
    """Two selectors' top n, alternating (first a, then b), duplicates dropped: BM25 ∪ dense."""

    name = "bm25+dense"

    def __init__(self, a: SelectionMethod, b: SelectionMethod) -> None:
        self.a, self.b = a, b
        self.fingerprint = config_hash({"interleaved": [a.fingerprint, b.fingerprint]})

    def select_many(self, queries: Sequence[Record], k: int) -> list[list[Example]]:
        out = []
        for xs, ys in zip(self.a.select_many(queries, k), self.b.select_many(queries, k), strict=True):
            merged: dict[str, Example] = {}
            for pair in zip(xs, ys, strict=False):
                for e in pair:
                    merged.setdefault(e.passage.id, e)
            for e in xs + ys:  # the longer list's tail
                merged.setdefault(e.passage.id, e)
            out.append(list(merged.values())[:k])
        return out


def _score_pairs(llm: LLM, pairs: list[tuple[str, str]]) -> list[Score]:
    return llm.score([c for c, _ in pairs], [q for _, q in pairs])


class ConEReranker:
    """TopK+ConE (Peng et al., 2024): rerank a base selector's top n by mean log p(query | candidate)."""

    name = "cone"

    def __init__(self, base: SelectionMethod, engine: Engine, cache: ScoreCache, top_n: int = RERANK_TOP_N) -> None:
        self.base, self.engine, self.cache, self.top_n = base, engine, cache, top_n
        # Scores of a chunk's pairs depend on their batch in low precision: the namespace is this method's.
        self.namespace = f"{engine.fingerprint}|cone"
        self.fingerprint = config_hash({"cone": base.fingerprint, "llm": engine.fingerprint, "top_n": top_n})

    def select_many(self, queries: Sequence[Record], k: int) -> list[list[Example]]:
        pool = self.base.select_many(queries, self.top_n)
        pairs = {pair_key(*p): p for q, examples in zip(queries, pool, strict=True) for p in self._pairs(q, examples)}
        found = self.cache.get_many(self.namespace, list(pairs))
        todo = [key for key in pairs if key not in found]
        if todo:
            _, scores = next(self.engine.map(_score_pairs, [[pairs[key] for key in todo]]))
            self.cache.put_many(self.namespace, zip(todo, scores, strict=True))
            found.update(zip(todo, scores, strict=True))
        out = []
        for q, examples in zip(queries, pool, strict=True):
            pairs_of = zip(examples, self._pairs(q, examples), strict=True)
            scored = [Example(e.passage, found[pair_key(*p)].mean) for e, p in pairs_of]
            out.append(sorted(scored, key=lambda e: -e.score)[:k])
        return out

    @staticmethod
    def _pairs(query: Record, examples: Sequence[Example]) -> list[tuple[str, str]]:
        return [query_pair(e.passage.contents, query.query) for e in examples]


def make_method(
    spec: str,
    passages: Sequence[Passage],
    engine: Engine,
    seed: int = 0,
    index_dir: Path | str | None = None,
    runtime: Runtime = "torch",
    query_max_length: int | None = None,
    score_cache: ScoreCache | None = None,
) -> SelectionMethod:
    """A method from its spec: a candidate-list file, cone, or any `make_selector` spec."""
    name, _, target = spec.partition(":")
    if target.endswith((".jsonl", ".jsonl.gz")):
        return RankedSelector(name, target, passages)
    if name == "cone":
        if target:
            base: SelectionMethod = make_selector(
                f"base:{target}", passages, seed, index_dir, runtime, query_max_length
            )
        else:
            base = Interleaved(
                make_selector("bm25", passages, seed, index_dir, runtime),
                make_selector("dense", passages, seed, index_dir, runtime, query_max_length),
            )
        return ConEReranker(base, engine, score_cache or ScoreCache(cache_dir() / "scores.sqlite"))
    return make_selector(spec, passages, seed, index_dir, runtime, query_max_length)


def check_method(spec: str) -> None:
    """What `make_method` would fail on, found before any method runs (a typo in the last of three methods
    failed after minutes of the first two): an unknown name, a missing candidate-list file, an encoder
    that is neither here nor in the hub cache nor on the hub."""
    name, _, target = spec.partition(":")
    if target.endswith((".jsonl", ".jsonl.gz")):
        if not Path(target).is_file():
            raise FileNotFoundError(f"method {spec!r}: candidate-list file not found: {target}")
    elif not target and name not in (*BUILTIN, "cone"):
        raise ValueError(
            f"unknown method {spec!r}: use {', '.join(BUILTIN)}, cone, dense:<encoder>, <name>:<retriever folder> "
            "or <name>:<candidate-list file>"
        )
    elif target and name not in ("zero", "random", "bm25"):  # these take no encoder
        resolve_encoder(target)
