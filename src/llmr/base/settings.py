"""A setting is a dataclass field with its help next to its default (LMOps' config.py style): the
pipeline YAML, `--show-config` and each stage command's generated --options all read them here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, field
from typing import Any


def setting(default: Any = MISSING, help: str = "", *, factory: Callable[[], Any] | None = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})
