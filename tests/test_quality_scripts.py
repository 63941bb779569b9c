"""The scripts behind RESULTS.md's quality claims: outcomes.py (the held-out comparison) and
interpolate.py (the WiSE-FT probe)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from llmr.base.encoders import DEFAULT_ENCODER, resolve_encoder

QUALITY = Path(__file__).parents[1] / "benchmarks" / "quality"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, QUALITY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def outcomes():
    return _script("outcomes")


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


def test_interpolate_averages_the_trained_weights_with_the_base_encoders(tmp_path: Path, monkeypatch) -> None:
    base_dir = Path(resolve_encoder(DEFAULT_ENCODER))
    trained = tmp_path / "trained"
    shutil.copytree(base_dir, trained)
    base = load_file(str(base_dir / "model.safetensors"))
    save_file({k: v + 1.0 for k, v in base.items()}, str(trained / "model.safetensors"))  # "training": +1 everywhere
    out = tmp_path / "mixed"
    monkeypatch.setattr(sys, "argv", ["interpolate.py", str(trained), str(out), "--alpha", "0.25"])
    _script("interpolate").main()
    mixed = load_file(str(out / "model.safetensors"))
    assert mixed.keys() == base.keys()
    name = next(k for k in base if k.endswith("query.weight"))
    assert (mixed[name] - base[name] - 0.25).abs().max() < 1e-5
    assert (out / "modules.json").exists()  # still a sentence-transformers folder
