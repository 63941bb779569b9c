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
    epr = retriever_dataset(cands, pool, RetrieverConfig(epochs=1, teacher="llm"))
    assert "label" not in epr.column_names


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
@pytest.mark.parametrize("teacher", ["reward", "llm"])
def test_trained_retriever_learns_the_teachers_preference(tmp_path: Path, teacher: str) -> None:
    cands, pool = _data()
    before = _wins(resolve_encoder("all-minilm-l6-v2"), pool)
    config = RetrieverConfig(teacher=teacher, epochs=6, batch_size=4, learning_rate=1e-4, bf16=False)  # type: ignore[arg-type]
    out = train_retriever(cands, pool, tmp_path / "retriever", config)
    assert (out / "model.safetensors").exists() and (out / "modules.json").exists()
    after = _wins(str(out), pool)
    assert after > before, (before, after)


def test_query_side_training_learns_and_routes(tmp_path: Path) -> None:
    """Only the query encoder trains; the pool keeps MiniLM's embeddings, and the saved Router says so."""
    from sentence_transformers import SentenceTransformer

    cands, pool = _data()
    before = _wins(resolve_encoder("all-minilm-l6-v2"), pool)
    config = RetrieverConfig(train_side="query", epochs=6, batch_size=4, learning_rate=1e-4, bf16=False)
    out = train_retriever(cands, pool, tmp_path / "retriever", config)
    assert _wins(str(out), pool) > before
    model, base = SentenceTransformer(str(out)), SentenceTransformer(resolve_encoder("all-minilm-l6-v2"))
    doc = pool["g0"].contents
    assert abs(model.encode_document(doc) - base.encode(doc)).max() < 1e-5  # documents: the base encoder
    assert abs(model.encode_query(doc) - base.encode(doc)).max() > 1e-3  # queries: the trained one
    assert not (out / "checkpoints").exists()


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_query_side_anchor_keeps_queries_in_the_pools_space(tmp_path: Path) -> None:
    """Against a fixed pool, an unanchored query encoder drifts away from it (the quality study's top
    cosine fell from 0.69 to 0.10); the anchor keeps each query near its base embedding."""
    from sentence_transformers import SentenceTransformer

    cands, pool = _data()
    base = SentenceTransformer(resolve_encoder("all-minilm-l6-v2"))
    queries = [c.query for c in cands]
    start = base.encode(queries, normalize_embeddings=True)
    kept = {}
    for weight in (0.0, 5.0):
        config = RetrieverConfig(
            train_side="query", epochs=6, batch_size=4, learning_rate=3e-4, anchor_weight=weight, bf16=False
        )
        out = train_retriever(cands, pool, tmp_path / f"anchor-{weight}", config)
        after = SentenceTransformer(str(out)).encode_query(queries, normalize_embeddings=True)
        kept[weight] = float((after * start).sum(-1).mean())
    assert kept[5.0] > kept[0.0] + 0.1, kept  # measured: 0.45 vs 0.25 at this (high) learning rate


def test_query_side_training_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """A run killed after a checkpoint picks up at its step and ends where an unbroken run ends."""
    import torch
    from sentence_transformers import SentenceTransformer

    cands, pool = _data()
    config = RetrieverConfig(train_side="query", epochs=2, batch_size=2, learning_rate=1e-4, bf16=False)
    whole = train_retriever(cands, pool, tmp_path / "whole", config)

    from llmr.training import query_side

    calls = {"n": 0}
    real = torch.optim.AdamW.step

    def dying_step(self, *args, **kwargs):  # the kill: after 5 of 8 steps (a checkpoint was written at 4)
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    torch.optim.AdamW.step = dying_step
    try:
        with pytest.raises(KeyboardInterrupt):
            query_side.train_query_side(cands, pool, tmp_path / "resumed", config, save_steps=4)
    finally:
        torch.optim.AdamW.step = real
    assert (tmp_path / "resumed" / "checkpoints" / "state.pt").exists()
    resumed = query_side.train_query_side(cands, pool, tmp_path / "resumed", config, save_steps=4)
    q = "Review: charming movie"
    a, b = SentenceTransformer(str(whole)).encode_query(q), SentenceTransformer(str(resumed)).encode_query(q)
    assert abs(a - b).max() < 1e-4


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
