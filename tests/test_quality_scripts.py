"""The scripts behind RESULTS.md's quality claims: outcomes.py (the held-out comparison) and
interpolate.py (the WiSE-FT probe)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
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


def test_headline_from_recorded_outcomes_and_the_table_written_from_it(tmp_path: Path) -> None:
    headline = _script("headline")
    # Two tasks; "good" is right on every query, "bm25" on half; "other" holds one query fewer.
    path = tmp_path / "o.json.gz"
    runs = {
        "bm25@k4s0": [
            {"query_id": f"q{i}", "task": t, "score": float(i % 2)} for t in ("sst2", "copa") for i in range(8)
        ],
        "good@k4s0": [{"query_id": f"q{i}", "task": t, "score": 1.0} for t in ("sst2", "copa") for i in range(8)],
        "other@k4s0": [{"query_id": f"q{i}", "task": "sst2", "score": 1.0} for i in range(7)],
    }
    with gzip.open(path, "wt") as f:
        json.dump(runs, f)
    top = headline.from_outcomes(path, ["bm25", "good=llmr"], resamples=200)
    assert top["test_queries"] == 16 and top["tasks"] == 2
    assert top["methods"]["llmr"] == {"all": 100.0, "cls": 100.0, "mc": 100.0}
    assert top["methods"]["bm25"]["all"] == 50.0
    assert top["differences"]["llmr - bm25"][0] == 50.0 and top["differences"]["mc: llmr - bm25"][0] == 50.0
    assert headline.from_outcomes(path, ["bm25", "other"], resamples=200)["test_queries"] == 7  # shared queries
    (tmp_path / "headline.json").write_text(json.dumps(top))
    md = tmp_path / "RESULTS.md"
    md.write_text(f"intro\n{headline.BEGIN}\nold table\n{headline.END}\nafter\n")
    headline.write_table(tmp_path / "headline.json", md)
    text = md.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith(f"{headline.END}\nafter\n")
    assert "| llmr | 100.0 | 100.0 | 100.0 |" in text and "| llmr - bm25 | +50.0 |" in text


def test_headline_add_records_a_difference_between_two_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(QUALITY))  # headline.py imports outcomes.py from beside it, as when run
    headline = _script("headline")
    a = _write(tmp_path / "a.json.gz", {"new": {f"q{i}": 1.0 for i in range(8)}})
    b = _write(tmp_path / "b.json.gz", {"old": {f"q{i}": float(i % 2) for i in range(6)}})
    path = tmp_path / "headline.json"
    path.write_text(json.dumps({"differences": {"llmr - bm25": [1.0, 0.0, 2.0]}}))
    headline.add(path, "llm teacher - labels teacher", f"{a}:new", f"{b}:old", per_mode=True)
    diffs = json.loads(path.read_text())["differences"]
    assert diffs["llmr - bm25"] == [1.0, 0.0, 2.0]  # what was there stays
    assert diffs["llm teacher - labels teacher"][0] == 50.0  # on the 6 queries both hold
    assert diffs["cls: llm teacher - labels teacher"][0] == 50.0 and len(diffs) == 3


def test_the_candidate_effect_predicts_each_list_from_the_other_lists_only(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(QUALITY))  # feedback_structure.py imports oracle.py from beside it
    structure = _script("feedback_structure")

    def row(qid: str, ids: list[str], scores: list[float]) -> dict:
        return {"query_id": qid, "task_name": "sst2", "doc_ids": ids, "doc_scores": scores}

    # "good" beats "bad" in the other lists; in q1 the LLM orders them the other way.
    lists = [
        row("q1", ["good", "bad", "alone"], [-2.0, -1.0, -1.5]),
        row("q2", ["good", "bad", "penalized"], [-1.0, -3.0, -100.0]),
        row("q3", ["bad", "good"], [-2.5, -0.5]),
    ]
    predict = structure.candidate_effects(lists)
    effect = predict(lists[0])
    assert effect[0] > effect[1] and np.isnan(effect[2])  # q1's own scores are left out; "alone" has no other list
    found = structure.agreement_by_mode(lists, predict)
    assert found["cls"] == (2 / 3, 3)  # agrees on q2 and q3, disagrees on q1; the penalized and unknown are skipped
