"""One SQLite key -> JSON value store behind every cache (LLM scores, evaluation outcomes).

WAL mode: many readers and one writer at a time, safe across processes. Each `put_many` is one
transaction, so a killed run leaves only whole, committed chunks behind. Keys live in namespaces
(an LLM's fingerprint, say), so one file holds several models' caches side by side.

Every SQLite failure (a damaged page, a full disk) is one `StoreError` line naming the file and what to
do. Each open store leaves a marker beside its file; a marker whose process is gone means a run ended
without closing, so the next open runs `PRAGMA quick_check` and moves a damaged file aside to rebuild it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

_CHUNK = 500  # keys per SELECT: under SQLite's variable limit
log = logging.getLogger(__name__)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True  # another user's
    except (ProcessLookupError, ValueError):
        return False
    return True


class StoreError(ValueError):
    """A cache file that SQLite cannot use: one line naming it and what to do."""

    def __init__(self, path: Path, exc: Exception) -> None:
        if "full" in str(exc):  # SQLITE_FULL: "database or disk is full"
            advice = "free some space or give a cache on another disk; what was cached so far is kept"
        elif "readonly" in str(exc) or "unable to open" in str(exc):
            advice = "make its folder writable, or give another cache path"
        else:
            advice = "delete it (it is rebuilt), or give another cache path"
        super().__init__(f"cache {path}: {exc} ({advice})")


class Store:
    def __init__(self, path: Path | str, table: str) -> None:
        if not table.isidentifier():
            raise ValueError(f"table name {table!r}: letters, digits and _ only")
        self.path, self.table = Path(path), table
        self.path.parent.mkdir(parents=True, exist_ok=True)
        unclean = self._claim()
        try:
            with self._failures():
                self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
                if unclean and self.path.stat().st_size:
                    self._check_after_crash()
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._create()
        except BaseException:
            self.close()
            raise

    def _claim(self) -> bool:
        """Leave this store's marker; True when a marker of a process that is gone was left (a crash)."""
        unclean = False
        for marker in self.path.parent.glob(f".{self.path.name}.*.open"):
            if not _alive(marker.name.split(".")[-3]):
                marker.unlink(missing_ok=True)
                unclean = True
        self._marker: Path | None = self.path.parent / f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.open"
        try:
            self._marker.touch()
        except OSError:  # a read-only folder: no marker, and no check after a crash
            self._marker = None
        return unclean

    def _check_after_crash(self) -> None:
        """`PRAGMA quick_check` after a run that did not close; a damaged file goes aside and a new one starts."""
        try:
            problems = [row[0] for row in self._db.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as exc:
            problems = [str(exc)]
        if problems == ["ok"]:
            return
        self._db.close()
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        os.replace(self.path, aside)
        log.warning("cache %s was damaged (%s): moved to %s; it is rebuilt", self.path, problems[0], aside.name)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:  # a damaged page, a full disk, "file is not a database"
            raise StoreError(self.path, exc) from None

    def _create(self) -> None:
        columns = [row[1] for row in self._db.execute(f"PRAGMA table_info({self.table})")]
        if columns == ["key", "value"]:  # llmr before namespaces: keep its entries, in the default namespace
            with self._db:
                self._db.execute(f"ALTER TABLE {self.table} RENAME TO {self.table}_v0")
                self._make_table()
                self._db.execute(f"INSERT INTO {self.table} SELECT '', key, value FROM {self.table}_v0")
                self._db.execute(f"DROP TABLE {self.table}_v0")
        elif columns and columns != ["namespace", "key", "value"]:
            raise sqlite3.DatabaseError(f"table {self.table} has columns {', '.join(columns)}, not llmr's")
        else:
            self._make_table()
            self._db.commit()

    def _make_table(self) -> None:
        self._db.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (namespace TEXT NOT NULL, key TEXT NOT NULL,"
            " value TEXT NOT NULL, PRIMARY KEY (namespace, key)) WITHOUT ROWID"
        )

    def get_many(self, keys: Sequence[str], namespace: str = "") -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._failures():
            for start in range(0, len(keys), _CHUNK):
                part = list(keys[start : start + _CHUNK])
                rows = self._db.execute(
                    f"SELECT key, value FROM {self.table} WHERE namespace = ? AND key IN ({','.join('?' * len(part))})",
                    [namespace, *part],
                )
                found.update((k, json.loads(v)) for k, v in rows)
        return found

    def put_many(self, items: Iterable[tuple[str, Any]], namespace: str = "") -> None:
        rows = [(namespace, k, json.dumps(v)) for k, v in items]
        for attempt in range(5):
            try:
                with self._failures(), self._db:
                    self._db.executemany(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?, ?)", rows)
                return
            except StoreError as exc:  # another writer held the lock past the timeout: wait, try again
                if attempt == 4 or "locked" not in str(exc):
                    raise
                time.sleep(1 + attempt)

    def count(self, namespace: str | None = None) -> int:
        where, args = ("", ()) if namespace is None else (" WHERE namespace = ?", (namespace,))
        with self._failures():
            return self._db.execute(f"SELECT COUNT(*) FROM {self.table}{where}", args).fetchone()[0]

    def close(self) -> None:
        """Close, and take the marker away: the next open then skips the check."""
        if getattr(self, "_db", None) is not None:
            self._db.close()
        if getattr(self, "_marker", None) is not None:
            self._marker.unlink(missing_ok=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
