"""The teacher (stage 4): reward-model scores over many queries, with or without the scoring penalties,
cached so a re-run scores nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmr.data.schema import PENALTY, CandidateList, Passage
from llmr.scoring.cache import ScoreCache
from llmr.training.reward import query_text
from llmr.training.teacher import teacher_scores

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


def _copa(score: float = 0.0) -> CandidateList:
    """A multiple-choice query (no label) with its one candidate."""
    return CandidateList(
        query_id="c",
        query="It rained. What happened?",
        answers=["A"],
        options=["We got wet.", "We got dry."],
        task_name="copa",
        doc_ids=["copa"],
        doc_scores=[score],
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


def test_llm_plus_penalties_takes_the_llms_lists_where_it_scored_and_the_labels_elsewhere() -> None:
    llm = _query("q").model_copy(update={"doc_ids": ["pos2", "pos1", "neg1"], "doc_scores": [-0.5, -1.5, PENALTY]})
    other_mode = _copa(-2.0)
    lists, stats = teacher_scores(
        [_query("q"), _query("r")], POOL, "llm+penalties", top_n=2, llm_lists=[llm, other_mode]
    )
    assert [c.query_id for c in lists] == ["q", "r", "c"]  # the LLM's lists of modes not distilled join
    assert lists[0] == llm  # as the LLM scored it: its own candidates and order, not cut to top_n
    assert lists[1].doc_scores == [0.0, PENALTY]  # an unscored query keeps the labels alone
    assert stats["llm_lists"] == 2
    with pytest.raises(ValueError, match="scored lists"):
        teacher_scores([_query()], POOL, "llm+penalties")


def test_unknown_teacher_and_missing_model_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="teacher must be one of"):
        teacher_scores([_query()], POOL, "oracle")  # type: ignore[arg-type]
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


def test_the_teacher_command_is_the_pipelines_stage_with_its_penalties_cache_and_runtime(
    reward_dir: Path, tmp_path: Path
) -> None:
    """`llmr train teacher` runs the pipeline's teacher stage: the config's penalties, the score cache, the
    encoder runtime and the modes all reach it, and each is in the output's manifest."""
    import json

    from typer.testing import CliRunner

    from llmr.base.manifest import manifest_path
    from llmr.cli import app
    from llmr.data.jsonl import read_jsonl, write_jsonl

    copa = _copa()
    write_jsonl(tmp_path / "data" / "passages.jsonl.gz", POOL.values())
    write_jsonl(tmp_path / "candidates.jsonl.gz", [_query(), copa])
    out = tmp_path / "teacher.jsonl.gz"
    args = ["train", "teacher", "-c", str(tmp_path / "candidates.jsonl.gz"), "-r", str(reward_dir), "-o", str(out)]
    args += ["--data", str(tmp_path / "data"), "--cache", str(tmp_path / "s.sqlite"), "--teacher", "reward+penalties"]

    def run(*extra: str) -> tuple[str, list[CandidateList], dict]:
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output + repr(result.exception)
        output = " ".join(result.output.split())  # rich wraps long paths
        return output, list(read_jsonl(out, CandidateList)), json.loads(manifest_path(out).read_text())

    output, [scored, _], manifest = run()
    [expected], _ = teacher_scores([_query()], POOL, "reward+penalties", reward_dir)
    assert scored.doc_scores == pytest.approx(expected.doc_scores, abs=1e-3)
    assert scored.doc_scores[1] == scored.doc_scores[2] == PENALTY  # the scoring section's penalties
    assert "3 pairs, 0 from the cache" in output  # pos1, pos2 and copa's own candidate
    assert "up to date" in run()[0]
    assert "3 pairs, 3 from the cache" in run("--force")[0]

    output, [relaxed, _], manifest = run("--set", "scoring.penalize_label_mismatch=false")
    assert relaxed.doc_scores[1] > PENALTY and relaxed.doc_scores[2] == PENALTY  # neg1 scored, copa still not
    assert manifest["config"]["penalties"]["penalize_label_mismatch"] is False

    output, taught, manifest = run("--modes", "cls", "--set", "encoder_runtime=onnx", "--teacher", "penalties")
    assert [t.query_id for t in taught] == ["q"]  # copa is multiple choice: not distilled
    assert manifest["config"]["encoder_runtime"] == "onnx" and manifest["config"]["distill"]["modes"] == ["cls"]

    # llm+penalties: the LLM's lists (of llm_modes) where it scored, the labels on every other list of `modes`
    llm = _query().model_copy(update={"doc_ids": ["pos2", "pos1"], "doc_scores": [-0.5, -1.5]})
    write_jsonl(tmp_path / "llm.jsonl.gz", [llm, _copa(-2.0)])
    mixed = ("--teacher", "llm+penalties", "--llm-scores", str(tmp_path / "llm.jsonl.gz"), "--modes", "cls")
    _, taught, _ = run(*mixed)
    assert taught[0] == llm and [t.query_id for t in taught] == ["q", "c"]  # copa's LLM list joins
    _, taught, manifest = run(*mixed, "--llm-modes", "mc")
    assert taught[0].doc_scores == [0.0, PENALTY, PENALTY, 0.0] and taught[1].doc_scores == [-2.0]
    assert manifest["config"]["distill"]["llm_modes"] == ["mc"]
