"""Stage 8 of LLM-R: the trained retriever choosing examples for new queries (library and HTTP)."""

from llmr.serving.selector import Selector

__all__ = ["Selector"]
