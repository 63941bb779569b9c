"""The one SQLite store behind the score and outcome caches."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmr.base.store import Store


def test_values_round_trip_across_connections_and_namespaces(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite", "things") as store:
        store.put_many([("a", [-1.2345678901234567, 3]), ("b", {"x": "é"})], namespace="m1")
        store.put_many([("a", 7)], namespace="m2")
    with Store(tmp_path / "s.sqlite", "things") as store:
        assert store.get_many(["a", "b", "c"], namespace="m1") == {"a": [-1.2345678901234567, 3], "b": {"x": "é"}}
        assert store.get_many(["a"], namespace="m2") == {"a": 7}
        assert store.get_many(["a"]) == {}  # the default namespace is its own
        assert (store.count("m1"), store.count()) == (2, 3)


def test_many_keys_are_read_in_chunks(tmp_path: Path) -> None:
    with Store(tmp_path / "s.sqlite", "t") as store:
        store.put_many((str(i), i) for i in range(1_234))
        assert len(store.get_many([str(i) for i in range(2_000)])) == 1_234


def test_table_names_are_identifiers(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="table name"):
        Store(tmp_path / "s.sqlite", "x; DROP TABLE y")


def test_a_cache_from_before_namespaces_keeps_its_entries(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "cache.sqlite"
    with sqlite3.connect(path) as db:  # the outcome cache's layout in earlier llmr versions
        db.execute("CREATE TABLE outcomes (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        db.execute("INSERT INTO outcomes VALUES ('k1', '{\"correct\": true}')")
    with Store(path, "outcomes") as store:  # this failed with "no such column: namespace"
        assert store.get_many(["k1"]) == {"k1": {"correct": True}}
        store.put_many([("k2", 2)])
        assert store.count() == 2


def test_a_broken_or_foreign_cache_file_is_one_clear_error_naming_it(tmp_path: Path) -> None:
    import sqlite3

    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ValueError, match=f"cache {junk}: file is not a database"):
        Store(junk, "outcomes")
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE outcomes (a INTEGER, b INTEGER, c INTEGER, d INTEGER)")
    with pytest.raises(ValueError, match="columns a, b, c, d, not llmr's"):
        Store(foreign, "outcomes")


def _damaged(tmp_path: Path, page: str) -> Path:
    """A cache of a few hundred rows whose middle, last or root page holds garbage."""
    path = tmp_path / "scores.sqlite"
    with Store(path, "llm_scores") as store:
        store.put_many((f"key{i}", ["x" * 200, i]) for i in range(400))
    size = 4096
    pages = path.stat().st_size // size
    index = {"root": 1, "middle": pages // 2, "last": pages - 1}[page]  # page 2 is the table's root
    with open(path, "r+b") as fh:
        fh.seek(index * size)
        fh.write(b"\xa5" * size)
    return path


@pytest.mark.parametrize("page", ["root", "middle", "last"])
def test_a_damaged_page_is_one_line_naming_the_cache(tmp_path: Path, page: str) -> None:
    """A damaged middle, last or root page gave a 55-line traceback mid-run."""
    path = _damaged(tmp_path, page)
    advice = rf"cache {path}: .*malformed.* \(delete it \(it is rebuilt\)"
    with pytest.raises(ValueError, match=advice) as err, Store(path, "llm_scores") as store:
        store.get_many([f"key{i}" for i in range(400)])
    assert "\n" not in str(err.value)


def test_a_cache_damaged_by_a_crash_is_moved_aside_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import subprocess
    import sys

    path = _damaged(tmp_path, "middle")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f".scores.sqlite.{dead.stdout.strip()}.0badf00d.open").touch()  # a killed run's marker
    with Store(path, "llm_scores") as store:
        assert store.count() == 0
        store.put_many([("k", 1)])
    assert "was damaged" in caplog.text and "it is rebuilt" in caplog.text
    assert [p.name.split(".damaged-")[0] for p in tmp_path.glob("*.damaged-*")] == ["scores.sqlite"]
    assert not list(tmp_path.glob(".*.open"))  # closed cleanly: the next open skips the check


def test_a_full_disk_is_one_line_naming_the_cache(tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    with Store(path, "llm_scores") as store:
        store._db.execute("PRAGMA max_page_count = 8")  # SQLite's own "disk full" (SQLITE_FULL)
        with pytest.raises(ValueError, match=rf"cache {path}: database or disk is full \(free some space"):
            store.put_many((f"key{i}", "x" * 500) for i in range(500))
