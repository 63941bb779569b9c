"""benchmarks/quality/outcomes.py: the held-out comparison behind RESULTS.md's confirmation."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "quality" / "outcomes.py"


@pytest.fixture(scope="module")
def outcomes():
    spec = importlib.util.spec_from_file_location("outcomes", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, runs: dict[str, dict[str, float]]) -> Path:
    data = {
        f"{method}@k4s0": [{"query_id": q, "task": "sst2", "score": s} for q, s in scores.items()]
        for method, scores in runs.items()
    }
    with gzip.open(path, "wt") as f:
        json.dump(data, f)
    return path


def test_compare_leaves_out_the_third_files_queries(outcomes, tmp_path: Path, capsys) -> None:
    # a wins on q0..q3 (the queries it was chosen on) and ties on q4..q7 (new ones)
    big = _write(
        tmp_path / "big.json.gz",
        {"a": {f"q{i}": 1.0 for i in range(8)}, "b": {f"q{i}": float(i >= 4) for i in range(8)}},
    )
    small = _write(tmp_path / "small.json.gz", {"b": {f"q{i}": 0.0 for i in range(4)}})
    outcomes.compare(f"{big}:a", f"{big}:b")
    everything = capsys.readouterr().out
    assert "+50.0" in everything and "(8 paired queries)" in everything
    outcomes.compare(f"{big}:a", f"{big}:b", f"{small}:b")
    held_out = capsys.readouterr().out
    assert "without the queries of" in held_out
    assert "+0.0" in held_out and "(4 paired queries)" in held_out


def test_compare_says_when_nothing_is_left(outcomes, tmp_path: Path, capsys) -> None:
    big = _write(tmp_path / "big.json.gz", {"a": {"q0": 1.0}, "b": {"q0": 0.0}})
    outcomes.compare(f"{big}:a", f"{big}:b", f"{big}:b")
    assert "no query in both files" in capsys.readouterr().out
