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
    """The weights' hash for a local folder, else the name (a hub id, pinned by the hub's revision)."""
    weights = Path(path) / "model.safetensors"
    return file_fingerprint(weights) if weights.is_file() else model


class Encoder:
    """A sentence-transformers encoder giving L2-normalised float32 vectors."""

    def __init__(self, model: str, batch_size: int = 128) -> None:
        from sentence_transformers import SentenceTransformer

        path = resolve_encoder(model)
        self.model = SentenceTransformer(path)
        self.batch_size = batch_size
        self.fingerprint = encoder_fingerprint(model, path)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)


class DenseRetriever:
    name = "dense"

    def __init__(
        self, model: str, passages: Sequence[Passage], batch_size: int = 128, index_dir: Path | str | None = None
    ) -> None:
        import faiss

        self.encoder = Encoder(model, batch_size)
        self.encode = self.encoder.encode
        self.size = len(passages)
        self.fingerprint = config_hash({"encoder": self.encoder.fingerprint, "pool": pool_fingerprint(passages)})
        self.config = {"retriever": self.name, "model": model, "index": self.fingerprint}
        saved = Path(index_dir) / f"{self.fingerprint}.faiss" if index_dir else None
        if saved is not None and saved.is_file():
            self.index = faiss.read_index(str(saved))
        else:
            vectors = self.encode([p.contents for p in passages])
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
        scores, docs = self.index.search(self.encode(queries), k, params=params)
        return docs, scores
