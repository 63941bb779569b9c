"""JSON Lines files (plain or gzip): validated reads that name the bad line, atomic writes."""

from __future__ import annotations

import gzip
import io
import json
import os
import zlib
from collections.abc import Callable, Container, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar, overload

from pydantic import BaseModel, ValidationError

from llmr.base.files import naming, temp_beside

M = TypeVar("M", bound=BaseModel)


class DataFileError(ValueError):
    """A line of a data file is not valid: names the file, the 1-based line number and the field."""

    def __init__(self, path: Path | str, line: int, field: str, message: str) -> None:
        self.path, self.line, self.field = str(path), line, field
        super().__init__(f"{path}:{line}: field {field!r}: {message}")


MAX_LINE_CHARS = 1_000_000  # one record; a longer line is a broken file, not data


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line), with decoding and gzip errors named by file and line. Lines are split on b"\\n" and
    decoded one by one: a text stream decodes 8 KiB ahead, so a bad byte on line 4 was blamed on line 1."""
    lineno = 0
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                yield lineno, raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFileError(path, lineno, "<file>", f"not UTF-8 text ({exc.reason} at byte {exc.start + 1})") from None
    except EOFError:
        raise DataFileError(path, lineno + 1, "<file>", "the gzip stream ends early: a truncated file?") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataFileError(path, lineno + 1, "<file>", f"not a valid gzip file ({exc})") from None


@overload
def read_jsonl(
    path: Path | str,
    model: None = None,
    unique: str | None = None,
    tasks: Container[str] | None = None,
    check: Callable[[Any], None] | None = None,
) -> Iterator[dict[str, Any]]: ...
@overload
def read_jsonl(
    path: Path | str,
    model: type[M],
    unique: str | None = None,
    tasks: Container[str] | None = None,
    check: Callable[[M], None] | None = None,
) -> Iterator[M]: ...
def read_jsonl(
    path: Path | str,
    model: type[M] | None = None,
    unique: str | None = None,
    tasks: Container[str] | None = None,
    check: Callable[[Any], None] | None = None,
) -> Iterator[dict[str, Any] | M]:
    """Yield each line as a dict, or validated as `model`. Blank lines are allowed; nothing is skipped.
    `unique`: a field whose value may appear on one line only (with task_name for records); `tasks`:
    the task names a row's task_name must be one of; `check`: a check across files (a candidate's doc
    ids in the pool), raising ValueError("field: message") for the line."""
    path = Path(path)
    seen: dict[Any, int] = {}
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        if len(line) > MAX_LINE_CHARS:
            raise DataFileError(path, lineno, "<line>", f"{len(line):,} characters; the limit is {MAX_LINE_CHARS:,}")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataFileError(path, lineno, "<json>", f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DataFileError(path, lineno, "<json>", f"expected a JSON object, got {type(obj).__name__}")
        if model is None:
            yield obj
            continue
        try:
            row = model.model_validate(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            field, message = ".".join(str(p) for p in err["loc"]), err["msg"].removeprefix("Value error, ")
            if not field:  # a check across fields says which one it blames: "answers: ..."
                field, _, message = message.partition(": ") if ": " in message else ("<row>", "", message)
            raise DataFileError(path, lineno, field, message) from None
        if tasks is not None and obj.get("task_name") not in tasks:
            message = f"unknown task {obj.get('task_name')!r} (register it in llmr.tasks)"
            raise DataFileError(path, lineno, "task_name", message)
        if unique:
            key = (obj.get("task_name"), obj.get(unique)) if unique == "query_id" else obj.get(unique)
            if key in seen:
                raise DataFileError(path, lineno, unique, f"{obj.get(unique)!r} repeats line {seen[key]}")
            seen[key] = lineno
        if check is not None:
            try:
                check(row)
            except ValueError as exc:
                field, _, message = str(exc).partition(": ")
                raise DataFileError(path, lineno, field, message) from None
        yield row


def write_jsonl(path: Path | str, rows: Iterable[BaseModel | dict[str, Any]]) -> int:
    """Write rows atomically (temp file in the same folder, then rename). Returns the row count."""
    path = Path(path)
    tmp_path = temp_beside(path)
    count = 0
    try:
        with naming(path), open(tmp_path, "wb") as raw:
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
