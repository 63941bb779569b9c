"""`llmr demo`'s printed summary, with the study faked (the whole run is test_cli's slow test)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmr.cli import app, demo
from llmr.pipeline.runner import StageResult


def stage(name: str, **report: object) -> StageResult:
    return StageResult(name, "key", Path(name), True, 1.0, report)


STAGES = [
    stage("data", pool=1200),
    stage("iteration-1/reward", train_queries=43, held_back_queries=5, agreement_with_llm=0.48),
    stage("iteration-1/teacher", queries=400),
    stage("iteration-1/retriever", initial_agreement_with_teacher=0.5412, agreement_with_teacher=0.494),
]


def test_each_agreement_figure_gets_one_line_saying_what_it_measures_and_what_chance_is() -> None:
    assert demo.agreement_lines(STAGES, "reward+penalties") == [
        "agreement with llm 0.48: how often the reward model orders a pair of candidate examples as the LLM's "
        "scores do, on 5 held-back queries; 0.5 = chance.",
        "agreement with teacher 0.541 before training, 0.494 after: how often the retriever orders a pair of "
        "candidate examples as its teacher (reward+penalties) does, on held-back queries; 0.5 = chance.",
    ]
    later = [*STAGES, stage("iteration-2/retriever", agreement_with_teacher=0.61)]  # the last iteration's
    assert demo.agreement_lines(later, "penalties")[1].startswith("agreement with teacher 0.61 after: ")
    no_figures = [stage("iteration-1/retriever", initial_agreement_with_teacher=None, agreement_with_teacher=None)]
    assert demo.agreement_lines(no_figures, "penalties") == []  # no held-back queries: nothing to explain


def test_the_demo_prints_the_lines_after_its_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    methods = ["bm25", "dense", "llmr-1", "random", "zero"]
    ci = {"difference": 1.0, "low": -6.0, "high": 8.0}
    by_k = {
        "queries": {"sst2": 30, "copa": 30},
        "summary": {m: {"average": 50.0} for m in methods},
        "ci": {f"llmr-1 - {m}": ci for m in methods if m != "llmr-1"},
    }

    class Study:
        def __init__(self, *_: object) -> None: ...

        def run(self) -> dict:
            return {"stages": STAGES, "results": {"by_k": {"4": by_k}}}

    monkeypatch.setattr(demo, "Study", Study)
    monkeypatch.setattr(demo, "write_html_report", lambda out: out / "report.html")
    done = CliRunner().invoke(app, ["demo", "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    table_end = max(i for i, line in enumerate(lines) if line.startswith("└"))
    explained = [i for i, line in enumerate(lines) if "0.5 = chance." in line]
    assert len(explained) == 2 and table_end < explained[0]
    assert lines[explained[0]].startswith("agreement with llm 0.48: ") and "(reward+penalties)" in lines[explained[1]]
