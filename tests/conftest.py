from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # dspy's litellm: no network fetch at import


@pytest.fixture(scope="session")
def shared_tasks_dir() -> Path:
    """The offline llmr-tasks folder (<X>/shared/data/llmr-tasks beside <X>/main, or $LLMR_SHARED_DATA)."""
    env = os.environ.get("LLMR_SHARED_DATA")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data" / "llmr-tasks"
    if not path.is_dir():
        pytest.skip(f"offline task data not found at {path} (set LLMR_SHARED_DATA to the llmr-tasks folder)")
    return path
