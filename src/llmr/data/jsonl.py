"""JSON Lines files (plain or gzip): validated reads that name the bad line, atomic writes."""

from __future__ import annotations

import gzip
import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from llmr.base.files import temp_beside

M = TypeVar("M", bound=BaseModel)


class DataFileError(ValueError):
    """A line of a data file is not valid: names the file, the 1-based line number and the field."""

    def __init__(self, path: Path | str, line: int, field: str, message: str) -> None:
        self.path, self.line, self.field = str(path), line, field
        super().__init__(f"{path}:{line}: field {field!r}: {message}")


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, mode + "b"), encoding="utf-8")
    return open(path, mode, encoding="utf-8")


@overload
def read_jsonl(path: Path | str, model: None = None) -> Iterator[dict[str, Any]]: ...
@overload
def read_jsonl(path: Path | str, model: type[M]) -> Iterator[M]: ...
def read_jsonl(path: Path | str, model: type[M] | None = None) -> Iterator[dict[str, Any] | M]:
    """Yield each line as a dict, or validated as `model`. Blank lines are allowed; nothing is skipped."""
    path = Path(path)
    with _open_text(path, "r") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFileError(
                    path, lineno, "<json>", f"not valid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            if not isinstance(obj, dict):
                raise DataFileError(path, lineno, "<json>", f"expected a JSON object, got {type(obj).__name__}")
            if model is None:
                yield obj
                continue
            try:
                yield model.model_validate(obj)
            except ValidationError as exc:
                err = exc.errors()[0]
                field = ".".join(str(p) for p in err["loc"]) or "<row>"
                raise DataFileError(path, lineno, field, err["msg"]) from None


def write_jsonl(path: Path | str, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write rows atomically (temp file in the same folder, then rename). Returns the row count."""
    path = Path(path)
    tmp_path = temp_beside(path)
    count = 0
    try:
        with open(tmp_path, "wb") as raw:
            # No name and mtime=0 in the gzip header: the same rows give the same bytes (fingerprints).
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if path.suffix == ".gz" else None
            with io.TextIOWrapper(gz or raw, encoding="utf-8") as fh:
                for row in rows:
                    obj = row.model_dump() if isinstance(row, BaseModel) else row
                    fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
                    count += 1
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return count
