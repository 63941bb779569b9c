"""Atomic writes and content fingerprints: a kill never leaves half a file, a changed input is seen."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def naming(path: Path | str) -> Iterator[None]:
    """An OSError while writing `path` names it: a full disk said only "[Errno 28] No space left on device"."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or not exc.errno:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def publish(out: Path, save: Callable[[Path], None]) -> None:
    """`save` a folder (a model, a saved index) beside `out`, then swap it in: a kill leaves the old `out`
    or the new folder, never half of one. Files get the umask's permissions (safetensors writes 0600)."""
    staging, old = out.parent / f".{out.name}.saving", out.parent / f".{out.name}.old"
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)  # named by llmr: a killed run's
    staging.mkdir(parents=True)
    with naming(out):
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
        with naming(path):
            tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path | str, obj: Any) -> None:
    """Atomically write one JSON document (manifests, reports)."""
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=True) + "\n")


def file_fingerprint(path: Path | str, remember: bool = False) -> str:
    """sha256 of a file's content, streamed. `remember` (model weights, GBs): the hash is kept in the cache
    folder by (path, size, mtime, ctime, inode), so a rerun does not read the file again, while a file
    swapped or rewritten in place, whatever its size, is read and hashed anew."""
    path = Path(path).resolve() if remember else Path(path)
    stat = path.stat()
    stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]
    known = _remembered() if remember else {}
    entry = known.get(str(path))
    if entry and entry[:-1] == stamp:
        return entry[-1]
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    fingerprint = "sha256:" + digest.hexdigest()
    if remember:
        _remember(str(path), [*stamp, fingerprint])
    return fingerprint


def _hashes_file() -> Path:
    return cache_dir() / "file-hashes.json"


def _remembered() -> dict[str, list[Any]]:
    try:
        known = json.loads(_hashes_file().read_text())
    except (OSError, ValueError):
        return {}  # none yet, or damaged: the hashes are recomputed
    return known if isinstance(known, dict) else {}


def _remember(path: str, entry: list[Any]) -> None:
    known = _remembered()
    known[path] = entry
    try:
        write_json(_hashes_file(), known)
    except OSError as exc:  # a read-only cache folder: the hash is only recomputed next time
        logging.getLogger(__name__).warning("could not record the hash of %s in %s: %s", path, _hashes_file(), exc)


def folder_fingerprint(path: Path | str, remember_above: int = 64 << 20) -> str:
    """What a model folder (or file) holds: the content hash of every file, so an edited config or a
    swapped weights file is a new model, and two conversions that write the same bytes are the same one.
    Files over `remember_above` bytes keep their hash in the cache folder (`file_fingerprint`)."""
    path = Path(path)
    files = (
        sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    )
    digest = hashlib.sha256()
    for f in files:
        size = f.stat().st_size
        digest.update(f"{f.relative_to(path) if path.is_dir() else f.name}\0{size}\0".encode())
        digest.update(file_fingerprint(f, remember=size > remember_above).encode())
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


def reachable_hub_id(spec: str, what: str = "model") -> str:
    """`spec` when it is local, in the hub cache, or on the hub; else one line at once, saying it was read
    as a hub id. Loading it would retry for ~30 s offline and then fail in two lines."""
    from huggingface_hub import constants, model_info
    from huggingface_hub.errors import RepositoryNotFoundError

    # sentence-transformers reads a bare name as sentence-transformers/<name> too
    ids = [spec] if "/" in spec else [spec, f"sentence-transformers/{spec}"]
    snapshots = [Path(constants.HF_HUB_CACHE) / f"models--{i.replace('/', '--')}" / "snapshots" for i in ids]
    if Path(spec).expanduser().exists() or any(s.is_dir() and any(s.iterdir()) for s in snapshots):
        return spec
    read_as = f"{what} {spec!r} is no local file or folder, so it was read as a hub id"
    if constants.HF_HUB_OFFLINE:
        raise FileNotFoundError(f"{read_as}; it is not in the hub cache and HF_HUB_OFFLINE is set")
    try:
        model_info(spec, timeout=5)
    except RepositoryNotFoundError:
        if "/" not in spec:
            return spec  # perhaps sentence-transformers/<spec>: its loader decides
        raise FileNotFoundError(f"{read_as}; the hub has no such model (or it is private)") from None
    except Exception as exc:  # the hub client's own network errors (DNS, TLS, timeout) share no base class
        raise ConnectionError(f"{read_as}; the hub cannot be reached ({exc})") from None
    return spec
