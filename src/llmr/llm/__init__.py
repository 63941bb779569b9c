"""LLM backends behind one interface (`LLM`): pick one by name with `load_llm`."""

from __future__ import annotations

import importlib
from typing import Any

from llmr.llm.base import LLM, Score
from llmr.llm.models import DEFAULT_LLM, DTYPE_HELP, EMBEDDED, MODEL_HELP

# name -> "module:Class"; imported only when used, so optional engines stay optional.
BACKENDS: dict[str, str] = {
    "hf": "llmr.llm.hf:HFCausalLM",
    "llamacpp": "llmr.llm.llamacpp:LlamaCppLLM",
    "openai": "llmr.llm.openai_compat:OpenAICompatLLM",
    "vllm": "llmr.llm.vllm_backend:VLLMLLM",
}


def register_backend(name: str, target: str) -> None:
    """Make `load_llm(..., backend=name)` build `target` ("package.module:Class")."""
    BACKENDS[name] = target


def load_llm(model: str = DEFAULT_LLM, backend: str = "hf", **options: Any) -> LLM:
    try:
        module, cls = BACKENDS[backend].split(":")
    except KeyError:
        raise ValueError(f"unknown LLM backend {backend!r}; known: {', '.join(sorted(BACKENDS))}") from None
    return getattr(importlib.import_module(module), cls)(model, **options)


__all__ = [
    "BACKENDS",
    "DEFAULT_LLM",
    "DTYPE_HELP",
    "EMBEDDED",
    "LLM",
    "MODEL_HELP",
    "Score",
    "load_llm",
    "register_backend",
]
