"""One SQLite key -> JSON value store behind every cache (LLM scores, evaluation outcomes).

WAL mode: many readers and one writer at a time, safe across processes. Each `put_many` is one
transaction, so a killed run leaves only whole, committed chunks behind. Keys live in namespaces
(an LLM's fingerprint, say), so one file holds several models' caches side by side.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

_CHUNK = 500  # keys per SELECT: under SQLite's variable limit


class Store:
    def __init__(self, path: Path | str, table: str) -> None:
        if not table.isidentifier():
            raise ValueError(f"table name {table!r}: letters, digits and _ only")
        self.path, self.table = Path(path), table
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._create()
        except sqlite3.DatabaseError as exc:  # e.g. "file is not a database", "database disk image is malformed"
            self._db.close()
            raise ValueError(f"cache {self.path}: {exc} (delete it, or give another cache path)") from None

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
                with self._db:
                    self._db.executemany(f"INSERT OR REPLACE INTO {self.table} VALUES (?, ?, ?)", rows)
                return
            except sqlite3.OperationalError:  # another writer held the lock past the timeout
                if attempt == 4:
                    raise
                time.sleep(1 + attempt)

    def count(self, namespace: str | None = None) -> int:
        if namespace is None:
            return self._db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]
        return self._db.execute(f"SELECT COUNT(*) FROM {self.table} WHERE namespace = ?", (namespace,)).fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
