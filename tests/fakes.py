"""A deterministic stand-in LLM for plumbing tests (real-model tests live beside each stage's tests)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from llmr.data.schema import CandidateList
from llmr.llm.base import LLM, Score


class FakeLLM(LLM):
    """Scores are a hash of the pair: stable, distinct, and independent of batching."""

    fingerprint = "fake:v1"

    def __init__(self) -> None:
        self.calls: list[int] = []  # batch sizes seen by score()

    def score(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        self.calls.append(len(contexts))
        out = []
        for ctx, cont in zip(contexts, continuations, strict=True):
            h = int.from_bytes(hashlib.sha256(f"{ctx}|{cont}".encode()).digest()[:4], "big")
            n = max(1, len(cont.split()))
            self.tokens_processed += len(ctx.split()) + n
            out.append(Score(-(h % 1000) / 100 * n, n))
        return out

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: str | None = "\n") -> list[str]:
        return ["" for _ in prompts]


def sst2_candidates(query_id: str, word: str, doc_ids: list[str], doc_scores: list[float]) -> CandidateList:
    """A positive sst2 review query ("Review: <word> movie") with its scored candidates."""
    query = f"Review: {word} movie"
    return CandidateList(
        query_id=query_id, query=query, answers=["Positive"], task_name="sst2", doc_ids=doc_ids, doc_scores=doc_scores
    )
