"""The LLM-R task registry: 30 tasks in nine categories, and name/category lookup."""

from __future__ import annotations

from collections.abc import Iterable

from .base import CATEGORIES, RowError, Task
from .suite import TASKS

__all__ = ["CATEGORIES", "TASKS", "RowError", "Task", "get_task", "resolve_tasks"]

_CATEGORY_BY_KEY = {c.lower(): c for c in CATEGORIES}


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}") from None


def _expand(item: str, available: set[str] | None) -> list[Task]:
    key = item.strip().lower()
    if key == "all":
        return list(TASKS.values())
    if key == "all-available":
        if available is None:
            raise ValueError("'all-available' needs the set of available task names")
        return [t for t in TASKS.values() if t.name in available]
    if key in _CATEGORY_BY_KEY:
        category = _CATEGORY_BY_KEY[key]
        return [t for t in TASKS.values() if t.category == category]
    if item.strip() in TASKS:
        return [TASKS[item.strip()]]
    raise ValueError(
        f"unknown task or category {item.strip()!r}; known tasks: {', '.join(TASKS)}; "
        f"categories: {', '.join(CATEGORIES)}; or 'all' / 'all-available'"
    )


def resolve_tasks(spec: str | Iterable[str], available: set[str] | None = None) -> list[Task]:
    """Task names, category names (any case), 'all' or 'all-available' -> tasks, without repeats.

    `spec` is a comma-separated string or a list; 'all-available' means the tasks named in `available`.
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [i for i in items if i.strip()]
    if not items:
        raise ValueError("no tasks given")
    resolved: dict[str, Task] = {}
    for item in items:
        for task in _expand(item, available):
            resolved.setdefault(task.name, task)
    return list(resolved.values())
