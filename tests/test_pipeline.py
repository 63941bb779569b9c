"""`llmr pipeline`: config validation, stage keys (skip / redo only what changed), and a real run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fakes import FakeLLM
from llmr.data.jsonl import read_jsonl
from llmr.data.schema import PENALTY, CandidateList
from llmr.pipeline import Pipeline, PipelineConfig, stages
from llmr.pipeline.runner import held_back

TINY = [
    "data.source=samples",
    "data.tasks=sst2,ag_news,copa,natural_questions",
    "candidates.top_n=6",
    "scoring.n_candidates=5",
    "reward.epochs=1",
    "reward.batch_size=4",
    "retriever.epochs=1",
    "retriever.batch_size=4",
    "validation_fraction=0.25",
]


def tiny(*extra: str, iterations: int = 1) -> PipelineConfig:
    return PipelineConfig.load(None, [*TINY, f"iterations={iterations}", *extra])


def ran(results) -> dict[str, bool]:
    return {r.name: r.ran for r in results}


# -- config -------------------------------------------------------------------------------------


def test_config_reads_yaml_and_applies_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("iterations: 3\nreward:\n  epochs: 2\nretriever:\n  learning_rate: 1.0e-5\n")
    cfg = PipelineConfig.load(path, ["reward.epochs=4", "scoring.n_candidates=8"])
    assert cfg.iterations == 3 and cfg.reward.epochs == 4 and cfg.scoring.n_candidates == 8
    assert cfg.retriever.learning_rate == 1e-5 and cfg.reward.learning_rate == 2e-5  # untouched default


def test_a_partial_nested_section_keeps_its_parents_defaults(tmp_path: Path) -> None:
    """The retriever's groups default to 3 negatives (GroupConfig's own default is 7): setting one key of
    them must not reset the others to the class defaults."""
    path = tmp_path / "run.yaml"
    path.write_text("retriever:\n  groups:\n    seed: 7\n")
    cfg = PipelineConfig.load(path, ["retriever.groups.drop_same_label_negatives=false"])
    groups = cfg.retriever.groups
    assert (groups.seed, groups.drop_same_label_negatives, groups.n_negatives) == (7, False, 3)
    assert cfg.reward.groups.n_negatives == 7


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("reward:\n  epoch: 2\n", [], "reward.epoch"),  # a typo is an error, not a silent default
        ("retriever:\n  loss: human\n", [], "retriever.loss"),
        ("iterations: 0\n", [], "iterations"),
        ("[1, 2]\n", [], "mapping of sections"),
        ("reward: [\n", [], "not valid YAML"),
        ("", ["reward.epochs"], "expected section.key=value"),
        ("", ["scoring=[1,2"], "not valid YAML"),  # was a raw YAML traceback
        ("", ["scoring.n_candidates=-5"], "scoring.n_candidates = -5: Input should be greater than or equal to 1"),
        ("", ["scoring.chunk_pairs=0"], "scoring.chunk_pairs = 0"),
        ("", ["reward.epochs=-1"], "reward.epochs = -1"),
        ("", ["retriever.batch_size=0"], "retriever.batch_size = 0"),
        ("", ["retriever.temperature=0"], "retriever.temperature = 0: Input should be greater than 0"),
    ],
)
def test_config_errors_name_the_file_and_setting(tmp_path: Path, text: str, overrides: list[str], message: str) -> None:
    """One line, before any model loads (these used to crash late, after the LLM had loaded)."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"bad\.yaml|override") as info:
        PipelineConfig.load(path, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("distill:\n  prior: bm25\n", [], "bad.yaml: distill.prior was removed: refuted twice as a teacher prior"),
        ("", ["distill.prior_weight=0"], "config: distill.prior_weight was removed: the teacher prior was refuted"),
        ("retriever:\n  train_side: both\n", [], "retriever.train_side was removed: query-side training lost"),
        ("", ["retriever.anchor_weight=5"], "retriever.anchor_weight was removed"),
        ("", ["retriever.document_max_length=9"], "retriever.document_max_length was removed"),
        ("retriever:\n  teacher: llm\n", [], "retriever.teacher was removed: renamed retriever.loss"),
    ],
)
def test_a_retired_setting_fails_saying_why(tmp_path: Path, text: str, overrides: list[str], message: str) -> None:
    """Even at its old default: silently ignoring it would run another experiment than the one written."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        PipelineConfig.load(path if text else None, overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_retired_setting_is_one_line_and_exit_2_from_the_command_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from llmr.pipeline.study import StudyConfig

    path = tmp_path / "study.yaml"
    path.write_text("pipeline:\n  distill:\n    prior_weight: 1\n")
    with pytest.raises(ValueError, match=r"study\.yaml: pipeline\.distill\.prior_weight was removed"):
        StudyConfig.load(path)  # the study's pipeline section too
    got = subprocess.run(
        [sys.executable, "-m", "llmr.cli", "pipeline", "--show-config", "--set", "distill.prior=bm25"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    [line] = got.stderr.strip().splitlines()
    assert got.returncode == 2 and line.startswith("llmr: error: ")
    assert "distill.prior was removed: refuted twice as a teacher prior (benchmarks/RESULTS.md" in line


def test_renamed_retriever_settings_keep_the_stage_keys_they_had() -> None:
    """Retrievers trained before the loss was named `loss` (and the query-side knobs retired) are still
    found: the hashes are those of the old settings (teacher reward / llm, train_side both, ...)."""
    from llmr.base.manifest import config_hash
    from llmr.pipeline.runner import _keyed
    from llmr.training.retriever import RetrieverConfig, epr_config

    config = RetrieverConfig(dropout=None)  # the encoder's own dropout, as before the setting
    assert config_hash(_keyed(config)) == "23b061a9e704a7c2"
    assert config_hash(_keyed(epr_config(config))) == "dd7a870bb63a4ac7"
    assert config_hash(_keyed(RetrieverConfig(learning_rate=1e-4, max_length=96, dropout=None))) == "83d18f61271d6550"
    assert config_hash(_keyed(RetrieverConfig())) != "23b061a9e704a7c2"  # no dropout: another recipe, retrained


def test_settings_out_of_bounds_fail_when_built_directly() -> None:
    from llmr.training.retriever import RetrieverConfig

    with pytest.raises(ValueError, match="epochs = -1: must be at least 1"):
        RetrieverConfig(epochs=-1)


def test_shipped_configs_are_valid() -> None:
    for path in (Path(__file__).parents[1] / "configs").glob("*.yaml"):
        assert PipelineConfig.load(path).iterations >= 1, path


def test_held_back_split_is_stable_and_near_the_fraction() -> None:
    ids = [f"q{i}" for i in range(2000)]
    first = [held_back(q, 0.1, 42) for q in ids]
    assert first == [held_back(q, 0.1, 42) for q in ids]
    assert 0.07 < sum(first) / len(ids) < 0.13
    assert first != [held_back(q, 0.1, 7) for q in ids]  # the seed matters
    assert not any(held_back(q, 0.0, 42) for q in ids)


# -- stage keys ---------------------------------------------------------------------------------


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_rerun_does_no_work_and_a_retriever_setting_redoes_only_the_retriever(tmp_path: Path) -> None:
    out, cache = tmp_path / "run", tmp_path / "scores.sqlite"
    llm = FakeLLM()
    first = Pipeline(tiny(), out, llm=llm, cache=cache).run()
    assert list(ran(first)) == [
        "data",
        "iteration-1/candidates",
        "iteration-1/score",
        "iteration-1/reward",
        "iteration-1/teacher",
        "iteration-1/retriever",
    ]
    assert all(ran(first).values())
    scored_calls = len(llm.calls)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"}

    again = Pipeline(tiny(), out, llm=llm, cache=cache).run()
    assert not any(ran(again).values())
    assert len(llm.calls) == scored_calls  # the LLM was not asked again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # no stage output rewritten
    # settings added later, set to their defaults, keep the keys of stages made before them
    explicit = tiny("distill.modes=[cls,mc,gen]")
    assert Pipeline(explicit, out, llm=llm, cache=cache).finished() == set(ran(first))

    changed = Pipeline(tiny("retriever.learning_rate=1e-4"), out, llm=llm, cache=cache).run()
    assert [name for name, r in ran(changed).items() if r] == ["iteration-1/retriever"]
    assert changed[-1].path != first[-1].path and first[-1].path.exists()  # the old one stays, reusable

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["retriever"]["learning_rate"] == 1e-4
    assert manifest["retriever"] == str(changed[-1].path)
    assert (out / "retriever").resolve() == changed[-1].path.resolve()


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_second_iteration_mines_with_the_first_retriever_and_reuses_iteration_one(tmp_path: Path) -> None:
    out, cache = tmp_path / "run", tmp_path / "scores.sqlite"
    one = Pipeline(tiny(), out, llm=FakeLLM(), cache=cache).run()
    two = Pipeline(tiny(iterations=2), out, llm=FakeLLM(), cache=cache).run()
    assert [r.name for r in two if r.ran] == [
        "iteration-2/candidates",
        "iteration-2/score",
        "iteration-2/reward",
        "iteration-2/teacher",
        "iteration-2/retriever",
    ]
    assert [r.key for r in two[: len(one)]] == [r.key for r in one]
    mined = json.loads((two[len(one)].path / "stage.json").read_text())
    assert mined["report"]["retriever"] == "dense"
    assert mined["inputs"]["iteration-1/retriever"] == one[-1].key


@pytest.mark.slow
def test_changed_data_setting_redoes_everything(tmp_path: Path) -> None:
    out, cache = tmp_path / "run", tmp_path / "scores.sqlite"
    Pipeline(tiny(), out, llm=FakeLLM(), cache=cache).run()
    again = Pipeline(tiny("data.tasks=sst2,copa,natural_questions"), out, llm=FakeLLM(), cache=cache).run()
    assert all(ran(again).values())


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_a_killed_stage_reruns_in_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, cache = tmp_path / "run", tmp_path / "scores.sqlite"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(stages, "reward", killed)
        with pytest.raises(KeyboardInterrupt):
            Pipeline(tiny(), out, llm=FakeLLM(), cache=cache).run()
    [folder] = (out / "iteration-1").glob("reward-*")
    assert not (folder / "stage.json").exists()  # not marked done
    results = Pipeline(tiny(), out, llm=FakeLLM(), cache=cache).run()
    assert [r.name for r in results if r.ran] == ["iteration-1/reward", "iteration-1/teacher", "iteration-1/retriever"]
    assert results[3].path == folder and (folder / "stage.json").exists()


# -- the real models --------------------------------------------------------------------------


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_real_pipeline_trains_a_loadable_retriever_from_gemma_feedback(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from typer.testing import CliRunner

    from llmr.cli import app

    args = ["pipeline", "-o", str(tmp_path / "run"), "--cache", str(tmp_path / "scores.sqlite"), "--iterations", "1"]
    for item in TINY:
        args += ["--set", item]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    score = next(s for s in manifest["stages"] if s["name"] == "iteration-1/score")
    assert score["report"]["llm"].startswith("hf:gemma-3-270m") and score["report"]["scored"] > 0
    reward = next(s for s in manifest["stages"] if s["name"] == "iteration-1/reward")
    assert reward["report"]["held_back_queries"] > 0 and reward["report"]["train_queries"] > 0
    model = SentenceTransformer(str(tmp_path / "run" / "retriever"))
    assert model.encode(["a query"]).shape == (1, 384)
    assert not list((tmp_path / "run").rglob("checkpoints"))  # removed once the model is saved


def test_cli_rejects_an_unknown_setting() -> None:
    from typer.testing import CliRunner

    from llmr.cli import app

    result = CliRunner().invoke(app, ["pipeline", "--set", "reward.epoch=2"])
    assert result.exit_code == 2 and "reward.epoch" in result.output


def test_cli_shows_the_validated_config() -> None:
    import yaml
    from typer.testing import CliRunner

    from llmr.cli import app

    result = CliRunner().invoke(
        app, ["pipeline", "--show-config", "--iterations", "3", "--set", "llm.model=smollm2-135m"]
    )
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.output)
    assert shown["iterations"] == 3 and shown["llm"]["model"] == "smollm2-135m"
    assert PipelineConfig.model_validate(shown).iterations == 3


@pytest.mark.slow
def test_epr_baseline_trains_from_llm_scores_and_reports_agreement(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    results = Pipeline(tiny("epr=true"), tmp_path / "run", llm=FakeLLM(), cache=tmp_path / "s.sqlite").run()
    epr = results[-1]
    assert epr.name == "iteration-1/epr" and epr.ran
    assert json.loads((epr.path / "llmr_config.json").read_text())["loss"] == "contrastive"
    assert epr.report["train_lists"] > 0 and "agreement_with_teacher" in epr.report
    assert SentenceTransformer(str(epr.path)).encode(["q"]).shape == (1, 384)
    assert (tmp_path / "run" / "retriever").resolve() == results[-2].path.resolve()  # the LLM-R retriever, not EPR


# -- two scales, the teacher, the union recipe -------------------------------------------------------


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_llm_scores_a_few_queries_and_the_teacher_every_mined_one(tmp_path: Path) -> None:
    cfg = tiny(
        "candidates.max_per_task=6", "scoring.max_per_task=2", "distill.teacher=reward+penalties", "distill.top_n=4"
    )
    results = {r.name: r for r in Pipeline(cfg, tmp_path / "run", llm=FakeLLM(), cache=tmp_path / "s.sqlite").run()}
    scored = list(read_jsonl(results["iteration-1/score"].path / stages.SCORES_FILE, CandidateList))
    taught = list(read_jsonl(results["iteration-1/teacher"].path / stages.TEACHER_FILE, CandidateList))
    per_task = lambda lists: {t: sum(c.task_name == t for c in lists) for t in {c.task_name for c in lists}}  # noqa: E731
    assert set(per_task(scored).values()) == {2} and set(per_task(taught).values()) == {6}
    assert {c.query_id for c in scored} < {c.query_id for c in taught}
    assert all(len(c.doc_ids) == 4 for c in taught)
    pool = {
        p.id: p
        for p in __import__("llmr.data.directory", fromlist=["DataDir"]).DataDir(results["data"].path).passages()
    }
    for c in taught:  # another task's candidates keep the penalty; no pair of them reached the model
        for d, s in zip(c.doc_ids, c.doc_scores, strict=True):
            assert (s == -100.0) == (
                pool[d].task_name != c.task_name
                or (c.task_name in ("sst2", "ag_news") and not pool[d].contents.endswith("\n" + c.answers[0]))
            )
    trained = results["iteration-1/retriever"].report["train_lists"]
    assert trained == sum(not held_back(c.query_id, 0.25, 42) for c in taught)


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_iteration_two_trains_on_the_union_of_teachers_unless_told_otherwise(tmp_path: Path) -> None:
    out, cache = tmp_path / "run", tmp_path / "s.sqlite"
    two = {r.name: r for r in Pipeline(tiny(iterations=2), out, llm=FakeLLM(), cache=cache).run()}
    inputs = json.loads((two["iteration-2/retriever"].path / "stage.json").read_text())["inputs"]
    assert {"iteration-1/teacher", "iteration-2/teacher"} <= set(inputs)
    one_lists = two["iteration-1/retriever"].report["train_lists"]
    assert two["iteration-2/retriever"].report["train_lists"] == 2 * one_lists  # same queries, both iterations

    alone = Pipeline(tiny("distill.union=false", iterations=2), out, llm=FakeLLM(), cache=cache).run()
    assert [r.name for r in alone if r.ran] == ["iteration-2/retriever"]  # everything else is reused
    assert alone[-1].report["train_lists"] == one_lists
    assert "iteration-1/teacher" not in json.loads((alone[-1].path / "stage.json").read_text())["inputs"]


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_the_penalties_teacher_asks_no_llm_and_modes_change_only_the_teacher_on(tmp_path: Path) -> None:
    out, llm = tmp_path / "run", FakeLLM()
    first = Pipeline(tiny("distill.teacher=penalties"), out, llm=llm).run()
    assert list(ran(first)) == ["data", "iteration-1/candidates", "iteration-1/teacher", "iteration-1/retriever"]
    assert llm.calls == []
    from llmr.pipeline.plan import plan

    assert [s.name for s in plan(tiny("distill.teacher=penalties"), rows={"sst2": 10})] == list(ran(first))

    cls = {r.name: r for r in Pipeline(tiny("distill.teacher=penalties", "distill.modes=[cls]"), out, llm=llm).run()}
    assert [name for name, r in cls.items() if r.ran] == ["iteration-1/teacher", "iteration-1/retriever"]
    taught = list(read_jsonl(cls["iteration-1/teacher"].path / stages.TEACHER_FILE, CandidateList))
    assert {c.task_name for c in taught} == {"sst2", "ag_news"}  # copa (mc) and natural_questions (gen) left out
    assert cls["iteration-1/teacher"].report["queries"] < first[2].report["queries"]

    epr = Pipeline(tiny("distill.teacher=penalties", "epr=true"), out, llm=llm).run()
    assert [r.name for r in epr if r.ran] == ["iteration-1/score", "iteration-1/epr"]  # EPR needs no reward model
    assert [s.name for s in plan(tiny("distill.teacher=penalties", "epr=true"), rows={"sst2": 10})] == [
        r.name for r in epr if r.name != "iteration-1/epr"
    ]


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_the_llm_teacher_distils_the_llms_own_scores_without_a_reward_model(tmp_path: Path) -> None:
    cfg = tiny("distill.teacher=llm", "scoring.max_per_task=2", "distill.top_n=4", "scoring.signal=margin")
    results = {r.name: r for r in Pipeline(cfg, tmp_path / "run", llm=FakeLLM()).run()}
    assert list(results) == [
        "data",
        "iteration-1/candidates",
        "iteration-1/score",
        "iteration-1/teacher",
        "iteration-1/retriever",
    ]
    scored = list(read_jsonl(results["iteration-1/score"].path / stages.SCORES_FILE, CandidateList))
    taught = list(read_jsonl(results["iteration-1/teacher"].path / stages.TEACHER_FILE, CandidateList))
    assert [c.query_id for c in taught] == [c.query_id for c in scored]  # only the queries the LLM scored
    assert all(t.doc_scores == s.doc_scores[:4] for t, s in zip(taught, scored, strict=True))
    assert "iteration-1/score" in json.loads((results["iteration-1/teacher"].path / "stage.json").read_text())["inputs"]
    from llmr.pipeline.plan import plan

    planned = {s.name: s for s in plan(cfg, rows={"sst2": 10, "copa": 10})}
    assert list(planned) == list(results) and "the LLM's scores" in planned["iteration-1/teacher"].work

    # llm+penalties: the same LLM lists, and the labels on every other mined query of distill.modes
    mixed = tiny(
        "distill.teacher=llm+penalties",
        "scoring.max_per_task=2",
        "distill.top_n=4",
        "scoring.signal=margin",
        "distill.modes=[cls]",
    )
    again = {r.name: r for r in Pipeline(mixed, tmp_path / "run", llm=FakeLLM()).run()}
    assert [n for n, r in again.items() if r.ran] == ["iteration-1/teacher", "iteration-1/retriever"]  # LLM reused
    by_id = {c.query_id: c for c in read_jsonl(again["iteration-1/teacher"].path / stages.TEACHER_FILE, CandidateList)}
    mined = list(read_jsonl(again["iteration-1/candidates"].path / stages.CANDIDATES_FILE, CandidateList))
    assert all(by_id[s.query_id] == s for s in scored)  # every LLM list, whatever its mode
    scored_ids = {s.query_id for s in scored}
    unscored = [c for c in mined if c.query_id not in scored_ids]
    labels_only = [by_id[c.query_id] for c in unscored if c.task_name in ("sst2", "ag_news")]
    assert labels_only and not any(c.query_id in by_id for c in unscored if c.task_name not in ("sst2", "ag_news"))
    assert all(set(c.doc_scores) <= {0.0, PENALTY} and len(c.doc_ids) == 4 for c in labels_only)


def test_the_paper_signal_keeps_the_score_stage_key() -> None:
    from llmr.scoring.feedback import settings_key

    assert "signal" not in settings_key(tiny().scoring)
    assert settings_key(tiny("scoring.signal=margin").scoring)["signal"] == "margin"


# -- the plan -----------------------------------------------------------------------------------


def test_plan_counts_the_work_each_stage_does() -> None:
    from llmr.pipeline.plan import plan

    settings = ("candidates.max_per_task=50", "scoring.max_per_task=10", "distill.top_n=8", "retriever.epochs=2")
    cfg = tiny(*settings, iterations=2)
    stages = {s.name: s for s in plan(cfg, rows={"sst2": 100, "copa": 30})}
    assert stages["iteration-1/candidates"].work == "80 queries"  # 50 + 30
    assert stages["iteration-1/score"].work == "≤100 LLM pairs"  # (10 + 10) x 5 candidates
    assert stages["iteration-1/teacher"].work == "640 pairs"  # every mined query x 8
    assert stages["iteration-2/retriever"].work == "160 lists x 2 epochs"  # the union of both iterations
    assert stages["iteration-2/score"].seconds == stages["iteration-1/score"].seconds > 0
    assert plan(cfg, rows={"sst2": 1000, "copa": 30})[2].seconds == stages["iteration-1/score"].seconds  # capped
    cls = {s.name: s for s in plan(tiny(*settings, "distill.modes=[cls]"), rows={"sst2": 100, "copa": 30})}
    assert cls["iteration-1/candidates"].work == "80 queries" and cls["iteration-1/teacher"].work == "400 pairs"  # sst2
    mixed = tiny(*settings, "distill.modes=[cls]", "distill.teacher=llm+penalties")
    planned = {s.name: s for s in plan(mixed, rows={"sst2": 100, "copa": 30})}
    assert "iteration-1/reward" not in planned and "the LLM's scores and labels" in planned["iteration-1/teacher"].work
    assert planned["iteration-1/retriever"].work == "60 lists x 2 epochs"  # 50 sst2 + copa's 10 LLM-scored
    gen_only = tiny(*settings, "distill.modes=[cls]", "distill.teacher=llm+penalties", "distill.llm_modes=[gen]")
    planned = {s.name: s for s in plan(gen_only, rows={"sst2": 100, "copa": 30})}
    assert planned["iteration-1/retriever"].work == "50 lists x 2 epochs"  # copa's scored lists stay out


def test_plan_times_the_penalties_teacher_by_what_it_runs() -> None:
    from llmr.pipeline.plan import plan

    def teacher(*sets: str):
        return {s.name: s for s in plan(tiny(*sets, "distill.top_n=8"), rows={"sst2": 1000})}["iteration-1/teacher"]

    reward, labels = teacher(), teacher("distill.teacher=penalties")
    assert labels.seconds < 2 < reward.seconds  # no model / the cross-encoder
    assert "labels only" in labels.work and "labels only" not in reward.work


def test_a_plan_runs_nothing_and_a_long_run_needs_yes(tmp_path: Path) -> None:
    import subprocess
    import sys

    from typer.testing import CliRunner

    from llmr.cli import app

    out = tmp_path / "run"
    shown = CliRunner().invoke(app, ["pipeline", "-o", str(out), "--plan", *[a for s in TINY for a in ("--set", s)]])
    assert shown.exit_code == 0 and "iteration-1/score" in shown.output and "total" in shown.output
    assert not out.exists()
    big = ["--set", "data.source=samples", "--set", "scoring.n_candidates=100000"]
    refused = subprocess.run(
        [sys.executable, "-m", "llmr.cli", "pipeline", "-o", str(out), *big],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert refused.returncode == 2 and "add --yes to start it" in refused.stderr and not out.exists()


def test_a_plan_counts_finished_stages_as_done(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from llmr.cli import app

    out = tmp_path / "run"
    assert Pipeline(tiny(), out).finished() == set() and not out.exists()  # nothing written
    Pipeline(tiny(), out).run(until="data")
    before = sorted(p.name for p in out.iterdir())
    assert Pipeline(tiny(), out).finished() == {"data"}
    assert Pipeline(tiny("data.max_train=3"), out).finished() == set()  # another key
    assert sorted(p.name for p in out.iterdir()) == before  # no folder made, no link moved
    shown = CliRunner().invoke(app, ["pipeline", "-o", str(out), "--plan", *[a for s in TINY for a in ("--set", s)]])
    rows = {line.split("│")[1].strip(): line for line in shown.output.splitlines() if line.count("│") > 3}
    assert "done" in rows["data"] and "done" not in rows["iteration-1/score"]


def test_a_shipped_config_runs_by_name() -> None:
    from llmr.pipeline.config import SHIPPED

    assert PipelineConfig.load("cpu-6tasks") == PipelineConfig.load(SHIPPED / "cpu-6tasks.yaml")
    assert PipelineConfig.load("configs/cpu-6tasks.yaml") == PipelineConfig.load("cpu-6tasks")  # the old path
    with pytest.raises(FileNotFoundError, match="shipped configs: cpu-6tasks"):
        PipelineConfig.load("cpu-7tasks")


def test_pipeline_and_study_take_the_engine_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    import llmr.cli.pipeline as cli
    from llmr.cli import app

    made, ran = [], []

    class Engine:
        fingerprint = "ray:fake"

        def close(self) -> None:
            made.append("closed")

    def fake_make_engine(placement, model, backend, options):
        made.append((placement.engine, model, placement.address, placement.workers))
        return Engine()

    class FakePipeline:  # the CLI asks it which stages are finished (the plan), then runs it
        def __init__(self, cfg, out, llm=None, cache=None) -> None:
            self.config, self.out, self.llm = cfg, out, llm

        def finished(self) -> set[str]:
            return set()

        def run(self) -> None:
            ran.append(self.llm)

    class FakeStudy:
        def __init__(self, cfg, out, llm=None, eval_llm=None) -> None:
            self.pipeline, self.llms = FakePipeline(cfg.pipeline, out), (llm, eval_llm)

        def run(self, until: str) -> None:
            ran.append(self.llms)

    monkeypatch.setattr(cli, "make_engine", fake_make_engine)
    monkeypatch.setattr(cli, "write_html_report", lambda out: out / "report.html")  # the fakes write no run
    monkeypatch.setattr(cli, "Pipeline", FakePipeline)
    settings = [a for s in TINY for a in ("--set", s)]
    args = ["pipeline", "-o", str(tmp_path), "--engine", "ray", "--address", "auto", "--workers", "3", *settings]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert made == [("ray", "gemma-3-270m", "auto", 3), "closed"] and isinstance(ran[0], Engine)
    ran.clear()
    assert CliRunner().invoke(app, ["pipeline", "-o", str(tmp_path), *settings]).exit_code == 0
    assert ran == [None]  # local: the pipeline loads its LLM itself
    bad = CliRunner().invoke(app, ["pipeline", "-o", str(tmp_path), "--engine", "dask", *settings])
    assert bad.exit_code == 2 and "expected 'local' or 'ray'" in bad.output
    made.clear()
    monkeypatch.setattr(cli, "Study", FakeStudy)
    study = ["study", "-o", str(tmp_path), "--until", "pipeline", "--engine", "ray", "--set", "eval.llm=smollm2-135m"]
    result = CliRunner().invoke(app, [*study, *[a for s in TINY for a in ("--set", f"pipeline.{s}")]])
    assert result.exit_code == 0, result.output
    assert [m[1] for m in made if m != "closed"] == ["gemma-3-270m", "smollm2-135m"] and made.count("closed") == 2


def test_held_out_tasks_are_never_mined_and_only_then_in_the_key(tmp_path: Path) -> None:
    plain, held = tiny(), tiny("candidates.hold_out=[copa]")
    assert "hold_out" not in plain.candidates.keyed() and held.candidates.keyed()["hold_out"] == ["copa"]
    assert held.candidates.unseen() == {"copa"}
    (data,) = Pipeline(held, tmp_path / "run").run(until="data")
    out = tmp_path / "mined"
    out.mkdir()
    stages.mine(data.path, "bm25", held, out)
    tasks = {c.task_name for c in read_jsonl(out / stages.CANDIDATES_FILE, CandidateList)}
    assert tasks == {"sst2", "ag_news", "natural_questions"}
    with pytest.raises(ValueError, match="unknown task or category 'copaa'"):
        tiny("candidates.hold_out=[copaa]")


def test_stage_summaries_print_as_readable_lines() -> None:
    from llmr.pipeline.runner import _short

    line = _short(
        {"train_queries": 1127, "agreement_with_llm": 0.49252574, "llm": "hf:[gemma]", "rate": None, "sub": {"a": 1}}
    )
    assert line == r"[dim]train queries 1,127, agreement with llm 0.493, llm hf:\[gemma][/]"
