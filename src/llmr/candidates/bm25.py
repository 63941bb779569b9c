"""BM25 over the example pool (bm25s: sparse-matrix BM25, English stop words, Snowball stemming)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import bm25s
import numpy as np

from llmr.data.schema import Passage

logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG


def _stemmer():  # PyStemmer is optional for bm25s; without it terms are matched unstemmed
    try:
        import Stemmer

        return Stemmer.Stemmer("english").stemWords
    except ImportError:  # pragma: no cover
        return None


class BM25Retriever:
    """Ranks pool items by BM25 of the query against their contents (query + answer)."""

    name = "bm25"

    def __init__(self, passages: Sequence[Passage], k1: float = 1.5, b: float = 0.75, n_threads: int = 0) -> None:
        self.size = len(passages)
        self.n_threads = n_threads
        self._stem = _stemmer()
        self._index = bm25s.BM25(k1=k1, b=b)
        tokens = bm25s.tokenize([p.contents for p in passages], stopwords="en", stemmer=self._stem, show_progress=False)
        self._index.index(tokens, show_progress=False)
        self.config = {"retriever": self.name, "k1": k1, "b": b, "stemmer": "snowball-english" if self._stem else None}

    def search(
        self, queries: Sequence[str], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k pool indices and scores per query, best first. `allowed` (bool per pool item) masks the pool;
        masked items may still fill the tail with score 0, so callers filter by their own rule."""
        k = min(k, self.size)
        tokens = self._tokenize(queries)
        mask = None if allowed is None else allowed.astype(np.float32)
        docs, scores = self._index.retrieve(
            tokens, k=k, show_progress=False, n_threads=self.n_threads, weight_mask=mask
        )
        return np.asarray(docs), np.asarray(scores)

    def _tokenize(self, queries: Sequence[str]) -> list[list[str]]:
        return bm25s.tokenize(list(queries), stopwords="en", stemmer=self._stem, return_ids=False, show_progress=False)
