"""The LLM-score cache: (model fingerprint, context, continuation) -> (sum log-prob, tokens), on `Store`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from llmr.base.store import Store
from llmr.llm.base import Score


def pair_key(context: str, continuation: str) -> str:
    # Length-prefixed so ("ab", "c") and ("a", "bc") never collide.
    return hashlib.sha256(f"{len(context)}:{context}{continuation}".encode()).hexdigest()


class ScoreCache:
    def __init__(self, path: Path | str) -> None:
        self.store = Store(path, "llm_scores")

    def get_many(self, model: str, keys: Sequence[str]) -> dict[str, Score]:
        return {k: Score(*v) for k, v in self.store.get_many(keys, namespace=model).items()}

    def put_many(self, model: str, items: Iterable[tuple[str, Score]]) -> None:
        self.store.put_many(((k, [s.logprob, s.n_tokens]) for k, s in items), namespace=model)

    def count(self, model: str | None = None) -> int:
        return self.store.count(model)

    def close(self) -> None:
        self.store.close()
