"""The one LLM interface every stage uses: score continuations, generate, rank options."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, NamedTuple


class Score(NamedTuple):
    logprob: float  # sum of log p(continuation token | everything before it)
    n_tokens: int  # continuation tokens scored

    @property
    def mean(self) -> float:
        return self.logprob / max(self.n_tokens, 1)


class LLM(ABC):
    """A frozen causal LM. Subclasses register themselves in `llmr.llm.registry`."""

    #: identifies the weights and numerics (model, revision, dtype): part of every cache key
    fingerprint: str
    #: tokens run through the model so far (context + continuation), for throughput reports
    tokens_processed: int = 0

    @abstractmethod
    def score(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        """log p(continuation | context) for each pair, summed over the continuation's tokens."""

    @abstractmethod
    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: str | None = "\n") -> list[str]:
        """Greedy continuation of each prompt, cut before the first `stop`."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text, as this model counts them (backends without a local tokenizer estimate)."""
        return [max(1, len(t.encode()) // 4) for t in texts]

    def score_options(self, contexts: Sequence[str], options: Sequence[Sequence[str]]) -> list[list[Score]]:
        """Each context's options scored after it. Backends that can run a context once for all of its
        options (a shared KV cache) override this; the result is the same as `score` on every pair."""
        flat = self.score(
            [c for c, opts in zip(contexts, options, strict=True) for _ in opts], [o for opts in options for o in opts]
        )
        out, start = [], 0
        for opts in options:
            out.append(flat[start : start + len(opts)])
            start += len(opts)
        return out

    def rank_options(self, context: str, options: Sequence[str]) -> list[float]:
        """Mean token log-prob of each option after the same context (higher is better)."""
        return [s.mean for s in self.score_options([context], [list(options)])[0]]


def bos_prefix(tokenizer: Any) -> list[int]:
    """[BOS] when the HF tokenizer adds one by itself (Gemma), else [] (SmolLM2 defines one but is trained
    without it): what every backend puts before a context."""
    bos = tokenizer.bos_token_id
    return [bos] if bos is not None and tokenizer("a")["input_ids"][:1] == [bos] else []


def cut_at_stop(text: str, stop: str | None) -> str:
    if stop:
        idx = text.find(stop)
        if idx >= 0:
            return text[:idx]
    return text
