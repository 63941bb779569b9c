"""The reward model (cross-encoder) trained on LLM feedback, with the real embedded MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes import sst2_candidates
from llmr.data.schema import CandidateList, Passage
from llmr.training.reward import RewardConfig, query_text, reward_dataset, train_reward_model

POSITIVE_WORDS = ["wonderful", "great", "lovely", "superb", "brilliant", "delightful"]
NEGATIVE_WORDS = ["awful", "boring", "dull", "terrible", "tedious", "ugly", "bland", "poor", "weak"]


def _data() -> tuple[list[CandidateList], dict[str, Passage]]:
    """Toy feedback where the LLM prefers examples sharing the query's first word."""
    pool = {}
    for w in POSITIVE_WORDS + NEGATIVE_WORDS:
        pool[w] = Passage(id=w, contents=f"Review: {w} film\nPositive", task_name="sst2")
    cands = []
    for i, w in enumerate(POSITIVE_WORDS):
        ids = [w, *[x for x in POSITIVE_WORDS if x != w][:2], *NEGATIVE_WORDS]
        scores = [0.0, -0.5, -0.6] + [-5.0 - j for j in range(len(NEGATIVE_WORDS))]
        cands.append(sst2_candidates(f"q{i}", w, ids, scores))
    return cands, pool


def test_dataset_rotates_groups_and_uses_answer_in_query() -> None:
    cands, pool = _data()
    ds = reward_dataset(cands, pool, RewardConfig(epochs=2))
    assert len(ds) == 12 and ds.column_names == ["query", "docs", "labels"]
    assert ds[0]["query"] == query_text(cands[0]) == "Review: wonderful movie\nPositive"
    assert len(ds[0]["docs"]) == 8 and ds[0]["labels"][0] == 0.0 and set(ds[0]["labels"][1:]) == {-1e4}
    assert ds[0]["docs"] != ds[6]["docs"]  # the same query's group in epoch 2 differs


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_training_raises_preferred_candidates(tmp_path: Path) -> None:
    from sentence_transformers.cross_encoder import CrossEncoder

    cands, pool = _data()
    config = RewardConfig(epochs=4, batch_size=4, learning_rate=5e-5, bf16=False)
    out = train_reward_model(cands, pool, tmp_path / "reward", config)
    model = CrossEncoder(str(out))
    assert (out / "model.safetensors").exists()
    wins = 0
    for c in cands:
        pos, neg = model.predict(
            [(query_text(c), pool[c.doc_ids[0]].contents), (query_text(c), pool[c.doc_ids[-1]].contents)]
        )
        wins += pos > neg
    assert wins >= 5


def test_no_usable_query_is_a_clear_error(tmp_path: Path) -> None:
    cands, pool = _data()
    held_out = [c.model_copy(update={"task_name": "yelp"}) for c in cands]
    with pytest.raises(ValueError, match="no usable training query"):
        train_reward_model(held_out, pool, tmp_path, RewardConfig())


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_cli_trains_and_the_teacher_command_scores_with_it(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from llmr.cli import app
    from llmr.data.directory import DataDir
    from llmr.data.jsonl import write_jsonl

    cands, pool = _data()
    write_jsonl(tmp_path / "data" / "passages.jsonl.gz", pool.values())
    write_jsonl(tmp_path / "llm_scores.jsonl.gz", cands)
    args = ["train", "reward", "-s", str(tmp_path / "llm_scores.jsonl.gz"), "--data", str(tmp_path / "data")]
    args += ["-o", str(tmp_path / "reward"), "--epochs", "4", "--batch-size", "4", "--learning-rate", "5e-5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "reward model ->" in result.output, result.output + repr(result.exception)
    manifest = json.loads((tmp_path / "reward" / "manifest.json").read_text())
    assert manifest["stage"] == "train.reward" and manifest["config"]["epochs"] == 4
    assert "up to date" in " ".join(CliRunner().invoke(app, args).output.split())  # rich wraps long paths

    teacher = ["train", "teacher", "-c", str(tmp_path / "llm_scores.jsonl.gz"), "-r", str(tmp_path / "reward")]
    teacher += ["--data", str(tmp_path / "data"), "-o", str(tmp_path / "teacher.jsonl.gz")]
    result = CliRunner().invoke(app, [*teacher, "--cache", str(tmp_path / "s.sqlite")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    scored = list(DataDir(tmp_path).candidates("teacher"))
    assert [t.doc_ids for t in scored] == [c.doc_ids for c in cands]
    assert sum(t.doc_scores[0] > t.doc_scores[-1] for t in scored) >= 5  # the trained model's order


def test_long_pairs_keep_their_ends(tmp_path: Path) -> None:
    """The answer and the label close both texts of a pair: over max_length the start is cut, not them
    (and so in the saved model the teacher stage loads)."""
    from sentence_transformers.cross_encoder import CrossEncoder

    from llmr.training.reward import RewardConfig, reward_model

    long = " ".join(["filler"] * 200)
    for side, kept in (("left", True), ("right", False)):
        model = reward_model(RewardConfig(max_length=64, truncation_side=side))
        ids = model.preprocess([(f"{long} question\npositive", f"{long} example\nnegative")])["input_ids"][0]
        text = model.tokenizer.decode(ids)
        assert len(ids) == 64 and ("positive" in text and "negative" in text) == kept
    model.save_pretrained(str(tmp_path))
    assert CrossEncoder(str(tmp_path)).tokenizer.truncation_side == "right"
    reward_model(RewardConfig()).save_pretrained(str(tmp_path))
    assert CrossEncoder(str(tmp_path)).tokenizer.truncation_side == "left"


def test_building_the_reward_model_prints_no_load_report_or_conversion_warning(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Its score head is new by design: transformers' LOAD REPORT (MISSING classifier.*, raw escape codes)
    and sentence-transformers' "Converting ... to CrossEncoder" tell a user nothing to act on."""
    import logging

    from llmr.training.reward import reward_model

    caplog.set_level(logging.INFO)
    model = reward_model(RewardConfig())
    assert model.predict([("a query\nan answer", "a passage")]).shape == (1,)
    said = capfd.readouterr().err + "\n".join(r.getMessage() for r in caplog.records)
    assert "LOAD REPORT" not in said and "MISSING" not in said and "\x1b[" not in said
    assert "Converting" not in said and "to CrossEncoder" not in said
    loaders = ("transformers.modeling_utils", "sentence_transformers.base.model")
    assert all(logging.getLogger(name).level == logging.NOTSET for name in loaders)  # only for this load
