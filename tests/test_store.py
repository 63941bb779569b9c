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
