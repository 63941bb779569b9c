"""`VectorIndex`: normalised vectors in FAISS (cosine search), exact or HNSW, filtered, saved atomically."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

IndexKind = Literal["flat", "hnsw"]


class VectorIndex:
    """Normalised vectors in FAISS, searched by inner product (cosine): exact (`flat`) or approximate
    (`hnsw`). A search can be restricted to some rows (one task's items); the filter for a named subset
    is built once. Saved and loaded atomically."""

    def __init__(self, dim: int, kind: IndexKind = "flat", hnsw_m: int = 32, ef_search: int = 64) -> None:
        import faiss

        if kind == "flat":
            self.faiss = faiss.IndexFlatIP(dim)
        elif kind == "hnsw":
            self.faiss = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.faiss.hnsw.efConstruction = 80
            self.faiss.hnsw.efSearch = ef_search
        else:
            raise ValueError(f"index must be 'flat' or 'hnsw', not {kind!r}")
        self.kind: IndexKind = kind
        self._filters: dict[str, Any] = {}

    @classmethod
    def load(cls, path: Path | str) -> VectorIndex:
        import faiss

        loaded = faiss.read_index(str(path))
        index = cls.__new__(cls)
        index.faiss, index._filters = loaded, {}
        index.kind = "hnsw" if isinstance(loaded, faiss.IndexHNSWFlat) else "flat"
        return index

    def save(self, path: Path | str) -> None:
        import faiss

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(self.faiss, str(tmp))
        os.replace(tmp, path)

    @property
    def dim(self) -> int:
        return self.faiss.d

    def __len__(self) -> int:
        return self.faiss.ntotal

    def add(self, vectors: np.ndarray) -> None:
        self.faiss.add(vectors)
        self._filters.clear()  # a named subset may have grown

    def vectors(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        return self.faiss.reconstruct_batch(np.asarray(rows, dtype=np.int64))

    def search(
        self, vectors: np.ndarray, k: int, rows: Sequence[int] | np.ndarray | None = None, name: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row ids of the top k, best first (id -1 where fewer exist); `rows` restricts the
        search, and `name` caches its filter (e.g. a task's name)."""
        import faiss

        if rows is None:
            return self.faiss.search(vectors, min(k, len(self)))
        if name is None or name not in self._filters:
            selector = faiss.IDSelectorBatch(np.asarray(rows, dtype=np.int64))
            params = (faiss.SearchParametersHNSW if self.kind == "hnsw" else faiss.SearchParameters)(sel=selector)
            if self.kind == "hnsw":
                params.efSearch = self.faiss.hnsw.efSearch
            if name is None:
                return self.faiss.search(vectors, min(k, len(rows)), params=params)
            self._filters[name] = (selector, params)  # the selector must outlive its params
        return self.faiss.search(vectors, min(k, len(rows)), params=self._filters[name][1])
