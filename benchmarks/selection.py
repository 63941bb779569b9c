"""Does the task scoping (or the index) change which examples a query gets? No LLM needed.

    python benchmarks/selection.py runs/qdata          # a data folder built as study.yaml's data section

For every test query, and for the study's eval sample (benchmarks/quality/study.yaml), the share whose k
examples are identical (same ids, same order), the same set, and the same up to tied scores (the same
score at every rank), between
- "unified": the pool's top 40, same task first, then the top k (`llmr eval` before issue 31);
- "per-task": the top k of the query's task's items (`PoolSelector`: `llmr eval` and `llmr.Selector`);
and, for the dense encoder, per-task HNSW (M 32, efSearch 64: `llmr serve --index hnsw`) against exact.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from llmr.base.index import VectorIndex
from llmr.candidates import load_retriever, mine_candidates
from llmr.data.directory import DataDir
from llmr.evaluation.selectors import DensePool, IndexMethod, make_selector
from llmr.pipeline.study import EvalSection, test_queries

STUDY = Path(__file__).parent / "quality" / "study.yaml"
Picks = list[tuple[list[str], list[float]]]


def agreement(a: Picks, b: Picks, rows: list[int]) -> dict[str, float]:
    pairs = [(a[i], b[i]) for i in rows]
    tied = [len(x[1]) == len(y[1]) and np.allclose(x[1], y[1], atol=1e-5) for x, y in pairs]
    return {
        "identical": float(np.mean([x[0] == y[0] for x, y in pairs])),
        "same_set": float(np.mean([set(x[0]) == set(y[0]) for x, y in pairs])),
        "same_up_to_ties": float(np.mean(tied)),
        "fewer_than_k": float(np.mean([len(x[0]) < len(y[0]) for x, y in pairs])),  # a's, where b has more
    }


class Memo:
    """An encoder that encodes each query once (every rule below sees the same vectors)."""

    def __init__(self, encoder: object) -> None:
        self.encoder, self.seen = encoder, {}

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if new:
            self.seen.update(zip(new, self.encoder.encode_queries(new), strict=True))
        return np.stack([self.seen[t] for t in texts])

    def __getattr__(self, name: str) -> object:
        return getattr(self.encoder, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--ks", default="4,8")
    parser.add_argument("--index-dir", type=Path, default=Path("runs/index"))
    parser.add_argument("--specs", default="bm25,dense")
    args = parser.parse_args()
    folder = DataDir(args.data)
    passages = list(folder.passages())
    every = list(folder.records("test"))
    study = {
        r.query_id for r in test_queries(every, EvalSection.model_validate(yaml.safe_load(STUDY.read_text())["eval"]))
    }
    subsets = {"all": list(range(len(every))), "study": [i for i, r in enumerate(every) if r.query_id in study]}
    out: dict[str, object] = {"queries": {s: len(rows) for s, rows in subsets.items()}, "pool": len(passages)}
    for spec in args.specs.split(","):
        unified_retriever = load_retriever(
            "bm25" if spec == "bm25" else "all-minilm-l6-v2", passages, index_dir=args.index_dir
        )
        method = make_selector(spec, passages, index_dir=args.index_dir)
        hnsw = None
        if isinstance(method, IndexMethod) and isinstance(method.pool, DensePool):
            method.pool.encoder = unified_retriever.encoder = Memo(method.pool.encoder)  # type: ignore[assignment]
            index = VectorIndex(method.pool.index.dim, "hnsw")
            index.add(method.pool.index.vectors(np.arange(len(passages))))
            pool = DensePool(method.pool.encoder, index="hnsw")
            pool._loaded(index, passages)
            hnsw = IndexMethod("hnsw", pool, "", None, False)
        for k in (int(k) for k in args.ks.split(",")):
            lists = mine_candidates(every, passages, unified_retriever, 40, "unified")
            unified = [(c.doc_ids[:k], c.doc_scores[:k]) for c in lists]
            picks = {"per-task": method.select_many(every, k)}
            if hnsw is not None:
                picks["hnsw"] = hnsw.select_many(every, k)
            got = {n: [([e.passage.id for e in x], [e.score for e in x]) for x in p] for n, p in picks.items()}
            row = {f"unified vs per-task, {s}": agreement(unified, got["per-task"], r) for s, r in subsets.items()}
            if "hnsw" in got:
                row |= {f"hnsw vs exact, {s}": agreement(got["hnsw"], got["per-task"], r) for s, r in subsets.items()}
            out[f"{spec} k={k}"] = row
            print(f"{spec} k={k}: {json.dumps(row)}", file=sys.stderr)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
