"""Run manifests: what produced a file (config, input fingerprints, model ids, library versions)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from llmr.data.jsonl import write_json

_LIBRARIES = ("llmr", "torch", "transformers", "sentence-transformers", "bm25s", "faiss-cpu", "datasets", "pydantic")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def file_fingerprint(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable key for a config: same settings, same key."""
    blob = json.dumps(config, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def write_manifest(
    out_dir: Path | str,
    stage: str,
    config: Mapping[str, Any],
    inputs: Mapping[str, str] | None = None,
    outputs: list[Path] | None = None,
    **extra: Any,
) -> Path:
    """Write `<out_dir>/manifest.json` for one stage run."""
    path = Path(out_dir) / "manifest.json"
    write_json(
        path,
        {
            "stage": stage,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": sys.argv,
            "config": dict(config),
            "config_hash": config_hash(config),
            "inputs": dict(inputs or {}),
            "outputs": {p.name: file_fingerprint(p) for p in outputs or []},
            "versions": versions(),
            **extra,
        },
    )
    return path
