"""The distillation loss's length-sorted forward pass, with the real embedded MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llmr.base.encoders import resolve_encoder

TEXTS = [
    ["a short query", "a much longer query that goes on " * 6, "mid-length query about a film"],
    ["doc one", "another document " * 12, "x"],
    ["a third column, longer than most of the others here " * 2, "tiny", "some words in a row"],
]


@pytest.fixture(scope="module")
def model():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_encoder("all-minilm-l6-v2"), model_kwargs={"attn_implementation": "eager"})
    return model.eval()  # no dropout: both paths must give the same numbers


def _features(model) -> list[dict]:
    return [model.preprocess(column) for column in TEXTS]


def test_sorted_forward_gives_each_columns_own_embeddings(model) -> None:
    from sentence_transformers.base.losses.merged_forward import embed_columns

    from llmr.training.losses import embed_sorted

    expected = embed_columns(model, _features(model))
    got = embed_sorted(model, _features(model), chunks=2)
    assert got is not None and len(got) == len(TEXTS)
    for column, (a, b) in enumerate(zip(expected, got, strict=True)):
        assert a.shape == b.shape == (3, 384)
        assert torch.allclose(a, b, atol=1e-5), column  # rows come back to their own column and place


def test_sorted_forward_refuses_what_is_not_a_padded_text_batch(model) -> None:
    from llmr.training.losses import embed_sorted

    features = _features(model)
    del features[1]["attention_mask"]
    assert embed_sorted(model, features) is None  # DistillationLoss then embeds column by column


def test_distillation_loss_and_its_gradients_do_not_depend_on_the_sorting(model) -> None:
    from llmr.training.losses import DistillationLoss

    labels = torch.tensor([[0.0, -1.0], [-2.0, 0.5], [1.0, 0.0]])
    results = []
    for sort in (False, True):
        model.zero_grad()
        loss = DistillationLoss(model, gather=False, sort_by_length=sort)(_features(model), labels)
        loss.backward()
        grad = model[0].auto_model.embeddings.word_embeddings.weight.grad.clone()
        results.append((loss.item(), grad))
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert grad_a.norm() > 0 and (grad_a - grad_b).norm() / grad_a.norm() < 1e-4


def test_dropout_setting_reaches_training_and_is_bounded(tmp_path: Path) -> None:
    from fakes import sst2_candidates
    from llmr.data.schema import Passage
    from llmr.training.retriever import RetrieverConfig, train_retriever

    with pytest.raises(ValueError, match=r"dropout = 1\.0: must be under 1"):
        RetrieverConfig(dropout=1.0)
    pool = {f"p{i}": Passage(id=f"p{i}", contents=f"Review: film {i}\nPositive", task_name="sst2") for i in range(6)}
    cands = [sst2_candidates(f"q{j}", f"film {j}", list(pool), [0.0, -1, -2, -3, -4, -5]) for j in range(4)]
    out = train_retriever(cands, pool, tmp_path / "r", RetrieverConfig(epochs=1, batch_size=4, dropout=0.0))
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_dropout_prob"] == 0.0 and config["attention_probs_dropout_prob"] == 0.0
