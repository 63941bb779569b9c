"""`llmr study`: the config, method resolution, and a tiny end-to-end study (fake LLM, real encoders)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fakes import FakeLLM
from llmr.pipeline.study import Study, StudyConfig
from test_pipeline import TINY

STUDY = Path(__file__).parents[1] / "benchmarks" / "quality" / "study.yaml"


def test_shipped_study_config_is_valid() -> None:
    cfg = StudyConfig.load(STUDY)
    last = f"llmr-{cfg.pipeline.iterations}"
    assert {"bm25", "dense", last} <= set(cfg.eval.methods) and cfg.eval.max_per_task > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["pipeline.iterations=2", "eval.methods=[bm25,llmr-3]"], "iterations 1..2"),
        (["eval.method=[bm25]"], "eval.method"),
        (["pipeline.reward.epoch=2"], "reward.epoch"),
        (["eval.encoder_runtime=onnx", "eval.query_max_length=2"], "greater than or equal to 8"),
        (["eval.query_max_length=128"], "eval.query_max_length = 128: .*onnx/openvino queries only"),
    ],
)
def test_study_config_errors(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StudyConfig.load(STUDY, overrides)


@pytest.mark.slow
def test_tiny_study_runs_end_to_end_and_resumes(tmp_path: Path) -> None:
    overrides = [f"pipeline.{o}" for o in TINY] + [
        "pipeline.iterations=2",
        "eval.methods=[zero,random,bm25,epr,llmr-1,llmr-2]",
        "eval.k=[2]",
        "eval.max_per_task=3",
        "eval.resamples=100",
    ]
    cfg = StudyConfig.load(None, overrides)
    out = tmp_path / "study"
    first = Study(cfg, out, llm=FakeLLM()).run()
    names = [r.name for r in first["stages"]]
    assert "iteration-1/epr" in names and "iteration-2/retriever" in names  # EPR trained because it is evaluated
    results = json.loads((out / "eval" / "results.json").read_text())
    assert results["methods"] == ["zero", "random", "bm25", "epr", "llmr-1", "llmr-2"]
    block = results["by_k"]["2"]
    assert set(block["queries"]) == {"sst2", "ag_news", "copa", "natural_questions"}
    assert all(1 <= n <= 3 for n in block["queries"].values())  # at most eval.max_per_task each
    assert "llmr-2 - bm25" in block["ci"] and "llmr-2 - random" in block["ci"]
    report = (out / "eval" / "study.md").read_text()
    assert "iteration-2/retriever" in report and "LLM-R, 2 iterations" in report and "eval/llmr-2" in report
    # The iteration-1 retriever's pool index, built to mine iteration 2, is the one the evaluation used.
    assert len(list((out / "pipeline" / "index").glob("*.faiss"))) >= 2

    llm = FakeLLM()
    again = Study(cfg, out, llm=llm).run()
    assert not any(r.ran for r in again["stages"]) and llm.calls == []  # every stage and outcome cached
    assert json.loads((out / "eval" / "results.json").read_text())["by_k"] == results["by_k"]

    # A variant (another k, fewer methods) reuses every pipeline stage and reports in its own folder.
    variant = StudyConfig.load(None, [*overrides, "eval.name=eval-k1", "eval.k=[1]", "eval.methods=[bm25,llmr-2]"])
    third = Study(variant, out, llm=FakeLLM()).run()
    assert not any(r.ran for r in third["stages"])
    assert json.loads((out / "eval-k1" / "results.json").read_text())["methods"] == ["bm25", "llmr-2"]
    assert (out / "eval" / "results.json").exists()


def test_gen_tasks_take_their_own_cap_and_baselines_need_only_the_data_stage(tmp_path: Path) -> None:
    overrides = [f"pipeline.{o}" for o in TINY] + [
        "eval.methods=[zero,bm25]",
        "eval.k=[1]",
        "eval.max_per_task=2",
        "eval.max_per_gen_task=1",
        "eval.resamples=100",
    ]
    study = Study(StudyConfig.load(None, overrides), tmp_path / "study", llm=FakeLLM())
    assert not study.needs_pipeline
    run = study.run()
    assert [r.name for r in run["stages"]] == ["data"]
    queries = json.loads((tmp_path / "study" / "eval" / "results.json").read_text())["by_k"]["1"]["queries"]
    assert queries == {"sst2": 2, "ag_news": 2, "copa": 2, "natural_questions": 1}


def test_headline_json_holds_averages_and_paired_cis_with_unseen_tasks(tmp_path: Path) -> None:
    overrides = [f"pipeline.{o}" for o in TINY] + [
        "pipeline.candidates.hold_out=[copa]",
        "eval.methods=[zero,bm25,dense]",
        "eval.compare=['zero - dense']",
        "eval.k=[1]",
        "eval.max_per_task=2",
        "eval.resamples=100",
        f"eval.headline={tmp_path / 'headline.json'}",
    ]
    Study(StudyConfig.load(None, overrides), tmp_path / "study", llm=FakeLLM()).run()
    top = json.loads((tmp_path / "headline.json").read_text())
    only = StudyConfig.load(None, [*overrides, "eval.tasks=unseen,sst2", "eval.name=unseen"])
    Study(only, tmp_path / "study", llm=FakeLLM()).run()
    unseen = json.loads((tmp_path / "study" / "unseen" / "results.json").read_text())["by_k"]["1"]["queries"]
    assert unseen == {"copa": 2, "sst2": 2}
    assert top == json.loads((tmp_path / "study" / "eval" / "headline.json").read_text())
    results = json.loads((tmp_path / "study" / "eval" / "results.json").read_text())["by_k"]["1"]
    assert top["test_queries"] == sum(results["queries"].values()) and top["unseen_tasks"] == ["copa"]
    assert top["methods"]["bm25"]["all"] == pytest.approx(results["summary"]["bm25"]["average"], abs=0.01)
    assert top["methods"]["bm25"]["unseen"] == pytest.approx(results["per_task"]["bm25"]["copa"], abs=0.01)
    for key in ("dense - bm25", "zero - dense", "cls: dense - bm25", "unseen: dense - bm25"):
        low, estimate, high = top["differences"][key][1], top["differences"][key][0], top["differences"][key][2]
        assert low <= estimate <= high
    ci = results["ci"]["dense - bm25"]
    assert top["differences"]["dense - bm25"] == [round(ci[x], 2) for x in ("difference", "low", "high")]


def test_compare_names_evaluated_methods() -> None:
    with pytest.raises(ValueError, match=r"eval\.compare 'llmr-1 - bm42'"):
        StudyConfig.load(STUDY, ["eval.compare=['llmr-1 - bm42']"])


def test_eval_section_passes_diversity_and_label_balance_to_the_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmr.pipeline.study as study_module

    seen = {}

    def spy(llm, methods, passages, records, ks, seeds, cache, settings, **kw):
        seen["settings"] = settings
        raise RuntimeError("stop after the settings")

    monkeypatch.setattr(study_module, "evaluate_methods", spy)
    overrides = [f"pipeline.{o}" for o in TINY] + [
        "eval.methods=[bm25]",
        "eval.diversity=0.3",
        "eval.balance_labels=true",
        "eval.query_max_length=128",
        "eval.encoder_runtime=openvino",
    ]
    with pytest.raises(RuntimeError, match="stop after"):
        Study(StudyConfig.load(None, overrides), tmp_path / "study", llm=FakeLLM()).run()
    assert seen["settings"].diversity == 0.3 and seen["settings"].balance_labels is True
    assert seen["settings"].query_max_length == 128 and seen["settings"].encoder_runtime == "openvino"
    with pytest.raises(ValueError, match="diversity"):
        StudyConfig.load(None, ["eval.diversity=1.5"])


def test_the_plan_of_a_study_of_baselines_holds_only_the_data_stage(tmp_path: Path) -> None:
    """A study of baselines and given retrievers runs only the data stage: its pipeline's estimate must not
    ask for --yes (it did: a 2.9 h pipeline that would never run)."""
    from typer.testing import CliRunner

    from llmr.cli import app

    long = ["--set", "pipeline.data.source=samples", "--set", "pipeline.scoring.n_candidates=100000"]

    def plan(methods: str) -> str:
        args = ["study", "-o", str(tmp_path / "s"), "--plan", *long, "--set", f"eval.methods={methods}"]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        return result.output

    assert "iteration-1/score" in plan("[bm25,llmr-1]")
    baselines = plan(f"[bm25,mine:{tmp_path}]")
    assert "data" in baselines and "iteration-1" not in baselines
