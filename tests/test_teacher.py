"""The teacher (stage 4): reward-model scores over many queries, with or without the scoring penalties,
cached so a re-run scores nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmr.data.schema import PENALTY, CandidateList, Passage
from llmr.scoring.cache import ScoreCache
from llmr.training.reward import query_text
from llmr.training.teacher import add_prior, teacher_scores

POOL = {
    "pos1": Passage(id="pos1", contents="Review: a joy\nPositive", task_name="sst2"),
    "pos2": Passage(id="pos2", contents="Review: a treat\nPositive", task_name="sst2"),
    "neg1": Passage(id="neg1", contents="Review: a bore\nNegative", task_name="sst2"),
    "copa": Passage(id="copa", contents="The man fell. What was the cause?\nHe slipped.", task_name="copa"),
}


def _query(qid: str = "q", ids: tuple[str, ...] = ("pos1", "neg1", "copa", "pos2")) -> CandidateList:
    return CandidateList(
        query_id=qid,
        query="Review: lovely",
        answers=["Positive"],
        task_name="sst2",
        doc_ids=list(ids),
        doc_scores=[1.0] * len(ids),
    )


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained cross-encoder on the embedded MiniLM (seeded head): real scores, no training time."""
    from sentence_transformers.cross_encoder import CrossEncoder
    from transformers import set_seed

    from llmr.base.encoders import resolve_encoder

    set_seed(0)
    path = tmp_path_factory.mktemp("reward")
    CrossEncoder(resolve_encoder("all-minilm-l6-v2"), num_labels=1).save_pretrained(str(path))
    return path


def test_penalties_alone_need_no_model() -> None:
    [scored], stats = teacher_scores([_query()], POOL, "penalties")
    assert scored.doc_scores == [0.0, PENALTY, PENALTY, 0.0]  # same label / other label / other task / same label
    assert stats == {"pairs": 2, "cached": 0, "scored": 0}


def test_reward_with_penalties_scores_only_kept_candidates(reward_dir: Path) -> None:
    [full], _ = teacher_scores([_query()], POOL, "reward", reward_dir)
    [mixed], stats = teacher_scores([_query()], POOL, "reward+penalties", reward_dir)
    assert len(full.doc_scores) == 4 and all(s > PENALTY for s in full.doc_scores)  # (bf16 may tie two)
    assert stats["scored"] == 2  # the two penalized candidates cost no model call
    assert mixed.doc_scores[1] == mixed.doc_scores[2] == PENALTY
    assert mixed.doc_scores[0] == pytest.approx(full.doc_scores[0], abs=1e-3)
    assert mixed.doc_scores[3] == pytest.approx(full.doc_scores[3], abs=1e-3)  # bf16: batch padding moves ~1e-4


def test_the_prior_orders_kept_candidates_as_the_base_encoder_and_leaves_penalties() -> None:
    from llmr.base.encoders import Encoder

    [plain], _ = teacher_scores([_query()], POOL, "penalties")
    seen: list[int] = []
    [prior] = add_prior([plain], POOL, 0.5, temperature=0.05, on_texts=seen.append, chunk=2)
    assert sum(seen) == 1 + 2  # each text once: the query and its two kept candidates
    encoder = Encoder("all-minilm-l6-v2")
    q = encoder.encode_queries(["Review: lovely"])[0]
    docs = encoder.encode_documents([POOL[d].contents for d in ("pos1", "pos2")])
    assert prior.doc_scores[1] == prior.doc_scores[2] == PENALTY  # another label, another task: untouched
    assert [prior.doc_scores[0], prior.doc_scores[3]] == pytest.approx(
        list(plain.doc_scores[0] + 0.5 * docs @ q / 0.05), abs=1e-3
    )


def test_top_n_cuts_each_list() -> None:
    [scored], _ = teacher_scores([_query()], POOL, "penalties", top_n=2)
    assert scored.doc_ids == ["pos1", "neg1"] and scored.doc_scores == [0.0, PENALTY]


def test_a_rerun_is_served_from_the_cache_and_a_changed_model_is_not(reward_dir: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    queries = [_query("a"), _query("b", ("pos2", "pos1"))]
    cache = ScoreCache(tmp_path / "cache.sqlite")
    first, stats = teacher_scores(queries, POOL, "reward", reward_dir, cache=cache)
    counts = ("pairs", "cached", "scored")
    # b's two pairs are among a's: scored once
    assert {k: stats[k] for k in counts} == {"pairs": 4, "cached": 0, "scored": 4}
    again, stats = teacher_scores(queries, POOL, "reward", reward_dir, cache=cache)
    assert {k: stats[k] for k in counts} == {"pairs": 4, "cached": 4, "scored": 0} and again == first

    changed = tmp_path / "changed"
    shutil.copytree(reward_dir, changed)
    weights = load_file(changed / "model.safetensors")
    name = next(k for k in weights if k.endswith("classifier.weight"))
    weights[name] = weights[name] * 2
    save_file(weights, changed / "model.safetensors")
    other, stats = teacher_scores(queries, POOL, "reward", changed, cache=cache)
    assert stats["scored"] == 4 and other[0].doc_scores != first[0].doc_scores
    cache.close()


def test_unknown_teacher_and_missing_model_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="teacher must be one of"):
        teacher_scores([_query()], POOL, "llm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the reward model"):
        teacher_scores([_query()], POOL, "reward")


def test_teacher_scores_are_the_reward_models_logits(reward_dir: Path) -> None:
    """ListNet trains logits; a sigmoid (sentence-transformers' one-label default) would squeeze every
    score into (0, 1) and flatten the softmax the retriever distils."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    [full], stats = teacher_scores([_query()], POOL, "reward", reward_dir)
    model = CrossEncoder(str(reward_dir), model_kwargs={"torch_dtype": getattr(torch, stats["dtype"])})
    pairs = [(query_text(_query()), POOL[d].contents) for d in full.doc_ids]
    logits = model.predict(pairs, activation_fn=torch.nn.Identity())
    assert full.doc_scores == pytest.approx(logits.tolist(), abs=1e-2)
    assert full.doc_scores != pytest.approx(torch.sigmoid(torch.tensor(logits)).tolist(), abs=1e-2)


def test_a_bm25_prior_orders_kept_candidates_by_bm25_over_the_pool_and_leaves_penalties() -> None:
    from llmr.candidates.bm25 import BM25Retriever

    query = _query().model_copy(update={"query": "Review: what a treat"})
    [plain], _ = teacher_scores([query], POOL, "penalties")
    seen: list[int] = []
    [prior] = add_prior([plain], POOL, 0.5, "bm25", on_texts=seen.append)
    assert sum(seen) == 1  # one query
    pool = list(POOL.values())
    expected = BM25Retriever(pool).scores(query.query, [pool.index(POOL["pos1"]), pool.index(POOL["pos2"])])
    assert prior.doc_scores[1] == prior.doc_scores[2] == PENALTY  # another label, another task: untouched
    assert [prior.doc_scores[0], prior.doc_scores[3]] == pytest.approx(list(0.5 * expected), abs=1e-5)
    assert prior.doc_scores[3] > prior.doc_scores[0]  # "treat" is in pos2 only
    with pytest.raises(ValueError, match="prior must be one of"):
        add_prior([plain], POOL, 0.5, "tfidf")  # type: ignore[arg-type]


def test_bm25_scores_a_query_without_known_terms_zero() -> None:
    from llmr.candidates.bm25 import BM25Retriever

    assert list(BM25Retriever(list(POOL.values())).scores("zzz qqq", [0, 3])) == [0.0, 0.0]
