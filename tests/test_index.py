"""The one dense index: flat and HNSW search, filtered search, save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmr.base.index import VectorIndex


def _unit(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_search_finds_the_exact_top_k_also_within_a_subset(kind: str) -> None:
    vectors, queries = _unit(300), _unit(5, seed=1)
    index = VectorIndex(16, kind)  # type: ignore[arg-type]
    index.add(vectors)
    sims = queries @ vectors.T
    scores, ids = index.search(queries, 3)
    assert (ids == np.argsort(-sims, axis=1)[:, :3]).all()
    np.testing.assert_allclose(scores, np.sort(sims, axis=1)[:, ::-1][:, :3], rtol=1e-5)
    odd = np.arange(1, 300, 2)
    for name in (None, "odd", "odd"):  # unnamed, then a cached filter used twice
        _, ids = index.search(queries, 3, odd, name=name)
        assert (ids == odd[np.argsort(-sims[:, odd], axis=1)[:, :3]]).all()


def test_a_named_filter_sees_rows_added_later() -> None:
    index = VectorIndex(16)
    index.add(_unit(10))
    index.search(_unit(1, seed=1), 2, [0, 1], name="t")
    extra = _unit(1, seed=1)
    index.add(extra)
    _, ids = index.search(extra, 1, [0, 1, 10], name="t")
    assert ids[0, 0] == 10


def test_save_and_load_keep_kind_and_vectors(tmp_path: Path) -> None:
    vectors = _unit(50)
    for kind in ("flat", "hnsw"):
        index = VectorIndex(16, kind)  # type: ignore[arg-type]
        index.add(vectors)
        index.save(tmp_path / f"{kind}.faiss")
        loaded = VectorIndex.load(tmp_path / f"{kind}.faiss")
        assert (loaded.kind, len(loaded), loaded.dim) == (kind, 50, 16)
        np.testing.assert_array_equal(loaded.vectors([3, 7]), vectors[[3, 7]])
    assert not list(tmp_path.glob(".*.tmp"))
    with pytest.raises(ValueError, match="flat"):
        VectorIndex(16, "ivf")  # type: ignore[arg-type]
