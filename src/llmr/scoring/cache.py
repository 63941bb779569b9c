"""A disk cache of LLM scores: (model fingerprint, context, continuation) -> (sum log-prob, tokens).

SQLite in WAL mode: many readers and one writer at a time, safe across processes; each `put_many`
is one transaction, so a killed run leaves only whole, committed chunks behind.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from llmr.llm.base import Score

_SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    model TEXT NOT NULL,
    key BLOB NOT NULL,
    logprob REAL NOT NULL,
    n_tokens INTEGER NOT NULL,
    PRIMARY KEY (model, key)
) WITHOUT ROWID
"""


def pair_key(context: str, continuation: str) -> bytes:
    # Length-prefixed so ("ab", "c") and ("a", "bc") never collide.
    blob = f"{len(context)}:{context}{continuation}".encode()
    return hashlib.sha256(blob).digest()


class ScoreCache:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def get_many(self, model: str, keys: Sequence[bytes]) -> dict[bytes, Score]:
        found: dict[bytes, Score] = {}
        for start in range(0, len(keys), 500):  # stay under SQLite's variable limit
            part = list(keys[start : start + 500])
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                f"SELECT key, logprob, n_tokens FROM scores WHERE model = ? AND key IN ({marks})", [model, *part]
            )
            found.update((k, Score(lp, n)) for k, lp, n in rows)
        return found

    def put_many(self, model: str, items: Iterable[tuple[bytes, Score]]) -> None:
        rows = [(model, k, s.logprob, s.n_tokens) for k, s in items]
        for attempt in range(5):
            try:
                with self._db:
                    self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)", rows)
                return
            except sqlite3.OperationalError:  # another writer holds the lock past the timeout
                if attempt == 4:
                    raise
                time.sleep(1 + attempt)

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        return self._db.execute("SELECT COUNT(*) FROM scores WHERE model = ?", (model,)).fetchone()[0]

    def close(self) -> None:
        self._db.close()
