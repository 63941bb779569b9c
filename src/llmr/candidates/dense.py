"""Dense retrieval over the pool with a sentence-transformers encoder (the trained llmr retriever, or
any encoder): normalised embeddings in a FAISS inner-product index (exact cosine search).

With `index_dir`, the index is saved as `<index_dir>/<key>.faiss`, keyed by the encoder's and the
pool's fingerprints, and reused only when both match.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llmr.base.encoders import Encoder
from llmr.base.index import VectorIndex
from llmr.base.manifest import config_hash
from llmr.base.runtime import Runtime
from llmr.data.schema import Passage


def pool_fingerprint(passages: Sequence[Passage]) -> str:
    digest = hashlib.sha256()
    for p in passages:
        digest.update(f"{len(p.id)}:{p.id}{len(p.contents)}:{p.contents}{p.task_name}\n".encode())
    return "sha256:" + digest.hexdigest()


class DenseRetriever:
    name = "dense"

    def __init__(
        self,
        model: str,
        passages: Sequence[Passage],
        batch_size: int = 128,
        index_dir: Path | str | None = None,
        runtime: Runtime = "torch",
        query_max_length: int | None = None,
    ) -> None:
        self.encoder = Encoder(model, batch_size, runtime, query_max_length)
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
