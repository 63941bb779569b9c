"""Run manifests: what produced a file (config, input fingerprints, model ids, library versions)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from llmr.base.files import file_fingerprint, write_json

_LIBRARIES = ("llmr", "torch", "transformers", "sentence-transformers", "bm25s", "faiss-cpu", "datasets", "pydantic")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


@cache
def git_commit() -> str | None:
    """The commit of the llmr checkout this runs from (with "+dirty" for uncommitted changes); None when
    llmr is an installed package or git is missing."""
    here = Path(__file__).parent
    try:
        run = [
            subprocess.run(["git", "-C", str(here), *a], capture_output=True, text=True, timeout=10)
            for a in (["rev-parse", "HEAD"], ["status", "--porcelain", "--untracked-files=no"])
        ]
    except (OSError, subprocess.SubprocessError):
        return None
    if run[0].returncode != 0:
        return None
    return run[0].stdout.strip() + ("+dirty" if run[1].stdout.strip() else "")


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable key for a config: same settings, same key."""
    blob = json.dumps(config, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def manifest_path(output: Path | str) -> Path:
    """The manifest beside an output: a folder's manifest.json, or <name>.manifest.json beside a file."""
    output = Path(output)
    if output.is_dir() or not output.suffix:
        return output / "manifest.json"
    return output.with_name(output.name.split(".")[0] + ".manifest.json")


def is_up_to_date(output: Path | str, config: Mapping[str, Any], inputs: Mapping[str, str]) -> bool:
    """True when `output` exists and was made from this config and these inputs (by their fingerprints)."""
    path = manifest_path(output)
    if not Path(output).exists() or not path.exists():
        return False
    try:
        made = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return made.get("config_hash") == config_hash(config) and made.get("inputs") == dict(inputs)


def write_manifest(
    path: Path | str,
    stage: str,
    config: Mapping[str, Any],
    inputs: Mapping[str, str] | None = None,
    outputs: list[Path] | None = None,
    **extra: Any,
) -> Path:
    """Write the manifest of one stage run to `path` (see `manifest_path`)."""
    path = Path(path)
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
            "git": git_commit(),
            **extra,
        },
    )
    return path
