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


def predict(
    llm: LLM, task: Task, records: Sequence[Record], prompts: Sequence[str], max_new_tokens: int = 64
) -> list[str]:
    """One prediction per prompt, in the task's answer space (label word, option letter, or text)."""
    if task.mode == "gen":
        return [text.strip() for text in llm.generate(prompts, max_new_tokens=max_new_tokens, stop="\n")]
    contexts: list[str] = []
    choices: list[str] = []
    spans: list[int] = []
    for record, prompt in zip(records, prompts, strict=True):
        options = list(task.label_words) if task.mode == "cls" else record.options
        contexts += [prompt] * len(options)
        choices += options
        spans.append(len(options))
    # One call for the whole batch: the backend batches (and may share) the repeated prompts.
    scores = llm.score(contexts, choices)
    out, start = [], 0
    for n in spans:
        values = [s.logprob if task.mode == "cls" else s.mean for s in scores[start : start + n]]
        out.append(task.label_words[max(range(n), key=values.__getitem__)])
        start += n
    return out
