"""Dense retrieval over the pool with a sentence-transformers encoder (the trained llmr retriever, or
any encoder): normalised embeddings in a FAISS inner-product index (exact cosine search).

With `index_dir`, the index is saved as `<index_dir>/<key>.faiss`, keyed by the encoder's and the
pool's fingerprints, and reused only when both match.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmr.base.encoders import resolve_encoder
from llmr.base.files import file_fingerprint
from llmr.base.manifest import config_hash
from llmr.base.runtime import ExportedModel, Runtime, check_runtime, export_folder
from llmr.data.schema import Passage


def pool_fingerprint(passages: Sequence[Passage]) -> str:
    digest = hashlib.sha256()
    for p in passages:
        digest.update(f"{len(p.id)}:{p.id}{len(p.contents)}:{p.contents}{p.task_name}\n".encode())
    return "sha256:" + digest.hexdigest()


def encoder_fingerprint(model: str, path: str) -> str:
    """The weights' hash for a local folder (every safetensors file: a query/document Router has two),
    else the name (a hub id, pinned by the hub's revision)."""
    weights = sorted(Path(path).glob("**/*.safetensors")) if Path(path).is_dir() else []
    if not weights:
        return model
    if len(weights) == 1:
        return file_fingerprint(weights[0])
    return config_hash({str(w.relative_to(path)): file_fingerprint(w) for w in weights})


# Queries are encoded in length-sorted batches of at most 8: a service's queued queries mix 10- and
# 256-token texts, and one padded batch of 32 ran 2.4x slower (benchmarks/RESULTS.md, issue 18).
QUERY_BATCH = 8


class Encoder:
    """A sentence-transformers encoder giving L2-normalised float32 vectors. Queries and pool items go
    through `encode_query` / `encode_document`: the same for a plain model; for a query/document Router
    (a retriever trained on the query side only) each side has its own modules.

    `runtime` other than torch runs the model's ONNX export (`llmr export`; made in the cache when the
    model folder has none) with ONNX Runtime or OpenVINO; `query_max_length` caps query tokens there."""

    def __init__(
        self, model: str, batch_size: int = 128, runtime: Runtime = "torch", query_max_length: int | None = None
    ) -> None:
        check_runtime(runtime)
        path = resolve_encoder(model)
        self.name = str(Path(model).resolve()) if Path(model).is_dir() else model  # what loads it again
        self.batch_size = batch_size
        self.runtime = runtime
        self.query_max_length = query_max_length
        weights = encoder_fingerprint(model, path)
        # torch adds nothing, so keys made before runtimes existed still hold
        self.fingerprint = weights if runtime == "torch" else f"{weights}|{runtime}"
        if runtime == "torch":
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(path)
            self.tokenizer = self.model.tokenizer
        else:
            self.exported = ExportedModel(export_folder(path, weights, "bi", runtime == "onnx-int8"), runtime)
            self.tokenizer = self.exported.tokenizer

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        batch = min(self.batch_size, QUERY_BATCH)
        if self.runtime != "torch":
            return _normalised(self.exported(list(texts), batch, self.query_max_length))
        return self._encode(self.model.encode_query, texts, batch)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        if self.runtime != "torch":
            return _normalised(self.exported(list(texts), self.batch_size))
        return self._encode(self.model.encode_document, texts, self.batch_size)

    def _encode(self, method: Any, texts: Sequence[str], batch_size: int) -> np.ndarray:
        vectors = method(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


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


class DenseRetriever:
    name = "dense"

    def __init__(
        self,
        model: str,
        passages: Sequence[Passage],
        batch_size: int = 128,
        index_dir: Path | str | None = None,
        runtime: Runtime = "torch",
    ) -> None:
        self.encoder = Encoder(model, batch_size, runtime)
        self.fingerprint = config_hash({"encoder": self.encoder.fingerprint, "pool": pool_fingerprint(passages)})
        self.config = {"retriever": self.name, "model": model, "index": self.fingerprint}
        saved = Path(index_dir) / f"{self.fingerprint}.faiss" if index_dir else None
        if saved is not None and saved.is_file():
            self.index = VectorIndex.load(saved)
        else:
            vectors = self.encoder.encode_documents([p.contents for p in passages])
            self.index = VectorIndex(vectors.shape[1])
            self.index.add(vectors)
            if saved is not None:
                self.index.save(saved)

    def search(
        self, queries: Sequence[str], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        rows = None if allowed is None else np.flatnonzero(allowed)
        scores, docs = self.index.search(self.encoder.encode_queries(queries), k, rows)
        return docs, scores
