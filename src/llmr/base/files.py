"""Atomic writes and content fingerprints: a kill never leaves half a file, a changed input is seen."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """Root of llmr's caches (converted models, exported encoders, LLM scores): $LLMR_CACHE, else ~/.cache/llmr.
    Created when missing (a new $LLMR_CACHE failed on the first temp file written into it)."""
    root = Path(os.environ.get("LLMR_CACHE") or Path.home() / ".cache" / "llmr")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def temp_beside(path: Path) -> Path:
    """A temp file in the target's folder (so the final rename is atomic), with normal permissions."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files
    return Path(tmp)


def publish(out: Path, save: Callable[[Path], None]) -> None:
    """`save` a folder (a model, a saved index) beside `out`, then swap it in: a kill leaves the old `out`
    or the new folder, never half of one. Files get the umask's permissions (safetensors writes 0600)."""
    staging, old = out.parent / f".{out.name}.saving", out.parent / f".{out.name}.old"
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)  # named by llmr: a killed run's
    staging.mkdir(parents=True)
    save(staging)
    mode = 0o666 & ~_umask()
    for f in staging.rglob("*"):
        if f.is_file():
            os.chmod(f, mode)
    if out.exists():
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)


def write_text(path: Path | str, text: str) -> None:
    """Atomically write a text file (reports, sidecars): a kill leaves the old file or the new one."""
    path = Path(path)
    tmp = temp_beside(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path | str, obj: Any) -> None:
    """Atomically write one JSON document (manifests, reports)."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def file_fingerprint(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def folder_fingerprint(path: Path | str, hash_below: int = 64 << 20) -> str:
    """What a model folder (or file) holds: the content hash of each file under `hash_below` bytes (configs,
    tokenizers, small weights) and the size and mtime of larger ones, so an edited config is a new model."""
    path = Path(path)
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    )
    digest = hashlib.sha256()
    for f in files:
        stat = f.stat()
        digest.update(f"{f.relative_to(path) if path.is_dir() else f.name}\0{stat.st_size}\0".encode())
        digest.update(file_fingerprint(f).encode() if stat.st_size < hash_below else str(stat.st_mtime_ns).encode())
    return "sha256:" + digest.hexdigest()


def local_or_hub_id(spec: str, what: str = "model") -> str:
    """`spec` as given when it exists locally or reads as a hub id (`name`, `owner/name`); an error, not a
    network lookup, when it reads as a local path that is missing (`runs/nope` where `runs/` exists,
    `./x`, `/x`, `~/x`, `a/b/c`, a file name)."""
    if Path(spec).expanduser().exists():
        return spec
    first = spec.split("/", 1)[0]
    local = (
        spec.startswith((".", "/", "~"))
        or spec.count("/") > 1
        or "\\" in spec
        or Path(spec).suffix in (".gguf", ".safetensors", ".json", ".bin")
        or ("/" in spec and Path(first).is_dir())
    )
    if local:
        raise FileNotFoundError(f"{what} not found: {spec} (no such file or folder here; a hub id reads owner/name)")
    return spec
