"""A setting is a dataclass field with its help next to its default (LMOps' config.py style): the
pipeline YAML, `--show-config` and each stage command's generated --options all read them here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, field, fields
from typing import Any


def setting(
    default: Any = MISSING,
    help: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
) -> Any:
    """A field with its help and, for numbers, its bounds (checked by `check_bounds` on construction)."""
    bounds = {name: bound for name, bound in (("ge", ge), ("gt", gt), ("lt", lt)) if bound is not None}
    metadata = {"help": help, **bounds}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def check_bounds(config: Any) -> None:
    """A config dataclass's `__post_init__`: the first setting out of bounds is one clear error, before any
    model loads (a negative epoch count used to fail after the LLM had loaded)."""
    for f in fields(config):
        value = getattr(config, f.name)
        if value is None:  # an optional setting left to its default
            continue
        if "ge" in f.metadata and not value >= f.metadata["ge"]:
            raise ValueError(f"{f.name} = {value!r}: must be at least {f.metadata['ge']:g}")
        if "gt" in f.metadata and not value > f.metadata["gt"]:
            raise ValueError(f"{f.name} = {value!r}: must be over {f.metadata['gt']:g}")
        if "lt" in f.metadata and not value < f.metadata["lt"]:
            raise ValueError(f"{f.name} = {value!r}: must be under {f.metadata['lt']:g}")
