"""llmr: learn which in-context examples to show a large language model (LLM-R)."""

__version__ = "0.1.0"
