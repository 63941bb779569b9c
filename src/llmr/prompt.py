"""How examples and a query become one prompt (the LLM-R format).

Examples are pool items (`query + "\\n" + answer`), joined by blank lines, the query last and
followed by a newline; the answer is scored or generated after it. The most relevant example
goes last, closest to the query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def build_prompt(examples: Sequence[str], query: str) -> str:
    return "".join(f"{ex}\n\n" for ex in examples) + f"{query}\n"


def examples_within_budget(
    examples: Sequence[str], query: str, budget: int | None, count_tokens: Callable[[Sequence[str]], list[int]]
) -> int:
    """How many of the examples (most similar first) fit with the query in `budget` tokens: the least
    similar are dropped first. The query is never cut: if it alone exceeds the budget, none fit.
    Show the kept ones most similar last: `build_prompt(examples[:n][::-1], query)`."""
    if budget is None or not examples:
        return len(examples)
    sizes = count_tokens([f"{ex}\n\n" for ex in examples] + [f"{query}\n"])
    n, total = len(examples), sum(sizes)
    while n and total > budget:
        n -= 1
        total -= sizes[n]
    return n
