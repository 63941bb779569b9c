"""How examples and a query become one prompt (the LLM-R format).

Examples are pool items (`query + "\\n" + answer`), joined by blank lines, the query last and
followed by a newline; the answer is scored or generated after it. The most relevant example
goes last, closest to the query.
"""

from __future__ import annotations

from collections.abc import Sequence


def build_prompt(examples: Sequence[str], query: str) -> str:
    return "".join(f"{ex}\n\n" for ex in examples) + f"{query}\n"
