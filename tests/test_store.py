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
