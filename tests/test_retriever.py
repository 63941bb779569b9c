"""The distilled bi-encoder (and the EPR baseline) with the real embedded MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import sst2_candidates
from llmr.base.encoders import resolve_encoder
from llmr.data.schema import CandidateList, Passage
from llmr.training.retriever import RetrieverConfig, retriever_dataset, train_retriever

WORDS = [
    "wonderful",
    "awful",
    "boring",
    "great",
    "lovely",
    "dull",
    "superb",
    "tedious",
    "brilliant",
    "ugly",
    "charming",
    "bland",
]
TRAIN, HELD_BACK = WORDS[:8], WORDS[8:]


def _data() -> tuple[list[CandidateList], dict[str, Passage]]:
    """The teacher prefers generic 'cinema notes' over the lexically closest reviews: a preference the
    initial encoder does not have."""
    pool = {
        f"sim_{w}": Passage(id=f"sim_{w}", contents=f"Review: {w} movie, truly {w}\nPositive", task_name="sst2")
        for w in WORDS
    }
    pool |= {
        f"g{i}": Passage(id=f"g{i}", contents=f"A note on cinema number {i}\nPositive", task_name="sst2")
        for i in range(3)
    }
    cands = []
    for w in TRAIN:
        others = [f"sim_{x}" for x in TRAIN if x != w][:6]
        ids = ["g0", "g1", "g2", f"sim_{w}", *others]
        scores = [0.0, -0.2, -0.4, -9.0] + [-5.0 - j * 0.1 for j in range(len(others))]
        cands.append(sst2_candidates(w, w, ids, scores))
    return cands, pool


def _wins(model_path: str, pool: dict[str, Passage]) -> int:
    """Held-back queries whose generic note outranks their own lexical twin."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path)
    wins = 0
    for w in HELD_BACK:
        q = model.encode_query(f"Review: {w} movie")
        g, s = model.encode_document([pool["g0"].contents, pool[f"sim_{w}"].contents])
        wins += float(q @ g) > float(q @ s)
    return wins


def test_dataset_has_groups_of_four_with_teacher_labels() -> None:
    cands, pool = _data()
    ds = retriever_dataset(cands, pool, RetrieverConfig(epochs=1))
    assert ds.column_names == ["query", "doc_1", "doc_2", "doc_3", "doc_4", "label"]
    assert len(ds) == 8 and ds[0]["query"] == "Review: wonderful movie"  # the query alone, no answer
    assert ds[0]["doc_1"].startswith("A note on cinema") and ds[0]["label"][0] == max(ds[0]["label"])
    epr = retriever_dataset(cands, pool, RetrieverConfig(epochs=1, loss="contrastive"))
    assert "label" not in epr.column_names


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
@pytest.mark.parametrize("loss", ["distill", "contrastive"])
def test_trained_retriever_learns_the_teachers_preference(tmp_path: Path, loss: str) -> None:
    cands, pool = _data()
    before = _wins(resolve_encoder("all-minilm-l6-v2"), pool)
    config = RetrieverConfig(loss=loss, epochs=6, batch_size=4, learning_rate=1e-4, bf16=False)  # type: ignore[arg-type]
    out = train_retriever(cands, pool, tmp_path / "retriever", config)
    assert (out / "model.safetensors").exists() and (out / "modules.json").exists()
    after = _wins(str(out), pool)
    assert after > before, (before, after)


def test_cli_trains_a_loadable_retriever(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from typer.testing import CliRunner

    from llmr.cli import app
    from llmr.data.jsonl import write_jsonl

    cands, pool = _data()
    write_jsonl(tmp_path / "data" / "passages.jsonl", pool.values())
    write_jsonl(tmp_path / "teacher.jsonl", cands)
    args = ["train", "retriever", "-s", str(tmp_path / "teacher.jsonl"), "--data", str(tmp_path / "data")]
    args += ["-o", str(tmp_path / "ret"), "--epochs", "1", "--batch-size", "4"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert SentenceTransformer(str(tmp_path / "ret")).encode(["a query"]).shape == (1, 384)
    assert (tmp_path / "ret" / "manifest.json").exists()
    assert "up to date" in CliRunner().invoke(app, args).output
    redo = CliRunner().invoke(app, [*args, "--groups-seed", "3"])  # any setting is in the key
    assert redo.exit_code == 0 and "up to date" not in redo.output
