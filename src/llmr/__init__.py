"""llmr: learn which in-context examples to show a large language model (LLM-R)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from llmr.serving import Selector


def __getattr__(name: str) -> Any:
    # `import llmr` stays light (the CLI starts fast); `llmr.Selector` loads torch and FAISS when first used.
    if name == "Selector":
        from llmr.serving import Selector

        return Selector
    raise AttributeError(f"module 'llmr' has no attribute {name!r}")


__all__ = ["Selector"]
