"""In-context inference per task mode, batched over queries.

- cls: the label word with the highest log-likelihood (the paper's constrained decoding over label words);
- mc:  the option with the highest mean token log-likelihood; the prediction is its letter;
- gen: greedy decoding to the first newline, at most `max_new_tokens` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmr.data.schema import Record
from llmr.llm.base import LLM
from llmr.tasks import Task


def option_loglikelihoods(llm: LLM, task: Task, records: Sequence[Record], prompts: Sequence[str]) -> list[dict]:
    """cls and mc: each answer's log-likelihood after its prompt (cls: summed over the label word's tokens;
    mc: the mean over the option's), keyed by label word or option letter."""
    choices = [list(task.label_words) if task.mode == "cls" else r.options for r in records]
    # The backend runs each prompt once for all its options where it can (a shared KV cache).
    return [
        {label: s.logprob if task.mode == "cls" else s.mean for label, s in zip(task.label_words, scores, strict=False)}
        for scores in llm.score_options(prompts, choices)
    ]


def predict(
    llm: LLM, task: Task, records: Sequence[Record], prompts: Sequence[str], max_new_tokens: int = 64
) -> list[str]:
    """One prediction per prompt, in the task's answer space (label word, option letter, or text)."""
    if task.mode == "gen":
        return [text.strip() for text in llm.generate(prompts, max_new_tokens=max_new_tokens, stop="\n")]
    return [best(scores) for scores in option_loglikelihoods(llm, task, records, prompts)]


def best(scores: dict[str, float]) -> str:
    """The answer with the highest log-likelihood (the first of equals)."""
    return max(scores, key=scores.__getitem__)
