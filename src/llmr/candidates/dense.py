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
from typing import Any

import numpy as np

from llmr.base.encoders import resolve_encoder
from llmr.base.files import file_fingerprint
from llmr.base.manifest import config_hash
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


class Encoder:
    """A sentence-transformers encoder giving L2-normalised float32 vectors. Queries and pool items go
    through `encode_query` / `encode_document`: the same for a plain model; for a query/document Router
    (a retriever trained on the query side only) each side has its own modules."""

    def __init__(self, model: str, batch_size: int = 128) -> None:
        from sentence_transformers import SentenceTransformer

        path = resolve_encoder(model)
        self.model = SentenceTransformer(path)
        self.batch_size = batch_size
        self.fingerprint = encoder_fingerprint(model, path)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.model.encode_query, texts)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(self.model.encode_document, texts)

    def _encode(self, method: Any, texts: Sequence[str]) -> np.ndarray:
        vectors = method(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32)


class DenseRetriever:
    name = "dense"

    def __init__(
        self, model: str, passages: Sequence[Passage], batch_size: int = 128, index_dir: Path | str | None = None
    ) -> None:
        import faiss

        self.encoder = Encoder(model, batch_size)
        self.size = len(passages)
        self.fingerprint = config_hash({"encoder": self.encoder.fingerprint, "pool": pool_fingerprint(passages)})
        self.config = {"retriever": self.name, "model": model, "index": self.fingerprint}
        saved = Path(index_dir) / f"{self.fingerprint}.faiss" if index_dir else None
        if saved is not None and saved.is_file():
            self.index = faiss.read_index(str(saved))
        else:
            vectors = self.encoder.encode_documents([p.contents for p in passages])
            self.index = faiss.IndexFlatIP(vectors.shape[1])
            self.index.add(vectors)
            if saved is not None:
                saved.parent.mkdir(parents=True, exist_ok=True)
                tmp = saved.with_name(f".{saved.name}.{os.getpid()}.tmp")
                faiss.write_index(self.index, str(tmp))
                os.replace(tmp, saved)

    def search(
        self, queries: Sequence[str], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        k = min(k, self.size if allowed is None else int(allowed.sum()))
        params = None
        if allowed is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.flatnonzero(allowed).astype(np.int64)))
        scores, docs = self.index.search(self.encoder.encode_queries(queries), k, params=params)
        return docs, scores
