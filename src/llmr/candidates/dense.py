"""Dense retrieval over the pool with a sentence-transformers encoder (the trained llmr retriever,
or any encoder). Exact cosine search with numpy; FAISS indexes come with the evaluation stage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmr.data.schema import Passage


class DenseRetriever:
    name = "dense"

    def __init__(self, model: str, passages: Sequence[Passage], batch_size: int = 128) -> None:
        from sentence_transformers import SentenceTransformer

        from llmr.training.reward import resolve_encoder

        self.encoder = SentenceTransformer(resolve_encoder(model))
        self.batch_size = batch_size
        self.size = len(passages)
        self.vectors = self._encode([p.contents for p in passages])
        self.config = {"retriever": self.name, "model": model}

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32)

    def search(
        self, queries: Sequence[str], k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.size)
        sims = self._encode(queries) @ self.vectors.T
        if allowed is not None:
            sims[:, ~allowed] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
        docs = np.take_along_axis(top, order, axis=1)
        return docs, np.take_along_axis(sims, docs, axis=1)
