"""benchmarks/reliability.py's kill suite and fuzz checks: a kill counts only when it lands on a live process,
and a fuzz case passes only with exit 2 and exactly one line on stderr."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "reliability.py"

# A resumable job: 30 steps of 0.1 s, its progress committed to a file after each; the output once done.
# With "quick" in the work folder it is done at once (a process that exits before any kill).
JOB = """
import os, sys, time
from pathlib import Path
run, work = Path(sys.argv[1]), Path(sys.argv[2])
run.mkdir(parents=True, exist_ok=True)
(run / "out").mkdir(exist_ok=True)
progress = run / "progress"
if (work / "quick").exists():  # done at once: the progress file last, then out
    (run / "out" / "result.txt").write_text(" ".join(str(i * i) for i in range(30)))
    progress.write_text("30")
    os._exit(0)
for step in range(int(progress.read_text()) if progress.exists() else 0, 30):
    time.sleep(0.1)
    (run / "progress.tmp").write_text(str(step + 1))
    (run / "progress.tmp").replace(progress)
(run / "out" / "result.txt").write_text(" ".join(str(i * i) for i in range(30)))
(run / "out" / "timing.txt").write_text(str(time.time()))
"""


@pytest.fixture(scope="module")
def reliability():
    spec = importlib.util.spec_from_file_location("reliability", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["reliability"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules["reliability"]


def _stage(reliability, work: Path):
    (work / "job.py").write_text(JOB)
    return reliability.Stage(
        "job",
        lambda run: [sys.executable, str(work / "job.py"), str(run), str(work)],
        lambda run: reliability._events(run / "progress", run / "out" / "result.txt"),
        "out",
        {"out/timing.txt": "a clock"},
        lambda run: {"progress": int((run / "progress").read_text())},
    )


def _honest(result: dict, n: int) -> None:
    landed = [k for k in result["kills"] if k["landed"]]
    assert all(k["alive_before_kill"] and k["rc"] == -9 for k in landed)
    assert not any(k["rc"] == -9 and not k["alive_before_kill"] for k in result["kills"])
    assert result["attempts"] == len(result["kills"]) >= result["landed_while_working"] == len(landed)
    assert len({k["kill"] for k in landed}) == len(landed) <= n
    assert result["resumed"] == sum(k["resumed"] for k in landed) <= len(landed)
    assert result["byte_identical"] == sum(k["byte_identical"] for k in landed) <= result["resumed"]
    for k in landed:
        assert k["byte_identical"] == (bool(k["identical"]) and all(k["identical"].values()))


def test_kills_land_on_working_processes_and_resume(reliability, tmp_path: Path) -> None:
    stage = _stage(reliability, tmp_path)
    result = reliability.bench_stage(stage, tmp_path, 2, random.Random(0), dict(os.environ))
    _honest(result, 2)
    assert result["landed_while_working"] == result["resumed"] == result["byte_identical"] == 2
    assert result["files_identical"] == {"out/result.txt": 2}  # timing.txt is left out, as asked
    for kill in (k for k in result["kills"] if k["landed"]):
        assert 0 < kill["state"]["progress"] <= 30  # killed once at work; the resumed run went on


def test_a_kill_after_exit_does_not_count(reliability, tmp_path: Path) -> None:
    stage = _stage(reliability, tmp_path)
    clean = tmp_path / "job-clean"
    subprocess.run(stage.command(clean), check=True)
    (tmp_path / "quick").touch()  # from now on the job is done before the kill comes
    kill = reliability.kill_while_working(
        stage.command(tmp_path / "late"), dict(os.environ), tmp_path / "late", stage, lambda events: 5.0
    )
    assert kill == kill | {"alive_before_kill": False, "rc": 0, "landed": False}


def test_missed_kills_are_drawn_again_and_reported(reliability, tmp_path: Path, monkeypatch) -> None:
    stage = _stage(reliability, tmp_path)
    profile = reliability.profile

    def then_quick(stage, run, env):  # a slow clean run, then runs that end before their kill
        measured = profile(stage, run, env)
        (tmp_path / "quick").touch()
        return measured

    monkeypatch.setattr(reliability, "profile", then_quick)
    result = reliability.bench_stage(stage, tmp_path, 2, random.Random(0), dict(os.environ), max_attempts=2)
    _honest(result, 2)
    assert result["attempts"] == 4 and result["landed_while_working"] == result["resumed"] == 0


def test_train_retriever_takes_the_checkpoint_interval(tmp_path: Path, monkeypatch) -> None:
    """The kill suite checkpoints every step (`--save-steps 1`), so that every kill meets a checkpoint."""
    from typer.testing import CliRunner

    import llmr.cli.train as train
    from llmr.cli import app

    seen = {}

    def fake_train(candidates, passages, out, config, **fit_options):
        seen.update(fit_options)
        Path(out).mkdir(parents=True)
        (Path(out) / "config.json").write_text("{}")

    monkeypatch.setattr(train, "train_retriever", fake_train)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "passages.jsonl").write_text('{"id": "p0", "contents": "a", "task_name": "sst2"}\n')
    (tmp_path / "scores.jsonl").write_text("")
    args = ["train", "retriever", "--data", str(tmp_path / "data"), "--scores", str(tmp_path / "scores.jsonl")]
    done = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r"), "--save-steps", "1"])
    assert done.exit_code == 0, done.output
    assert seen == {"save_steps": 1}
    assert CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r2"), "--save-steps", "0"]).exit_code == 2


@pytest.mark.parametrize(
    ("stderr", "rc", "passed"),
    [
        ("bad.jsonl:4: field 'id': duplicate\n", 2, True),
        ("bad.jsonl:4: field 'id': duplicate\n", 1, False),  # not exit 2
        ("╭─ Error ─╮\n│ bad.jsonl:4: field 'id' │\n╰──────────╯\n", 2, False),  # a box
        ("Traceback (most recent call last):\nbad.jsonl:4: field 'id'\n", 2, False),
        ("bad.jsonl:4: something else\n", 2, False),  # does not name the field
    ],
)
def test_fuzz_case_needs_exit_2_and_one_line(reliability, tmp_path: Path, stderr: str, rc: int, passed: bool) -> None:
    cmd = [sys.executable, "-c", f"import sys; sys.stderr.write({stderr!r}); sys.exit({rc})"]
    case = reliability._check("case", cmd, "field 'id'", tmp_path / "out")
    assert case["passed"] is passed and case["rc"] == rc and bool(case["why"]) is not passed


@pytest.mark.slow
def test_kill_suite_on_the_sample_tasks(tmp_path: Path) -> None:
    """The real suite, once per stage: its report counts only kills that landed on a live process."""
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "kills", "--n", "1", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "kills.json").read_text())
    assert set(report) == {"score", "train retriever", "eval"}
    for result in report.values():
        _honest(result, 1)
        assert result["landed_while_working"] == 1
    train = report["train retriever"]
    assert train["checkpoints_in_clean_run"] > 1
    assert train["met_a_checkpoint"] == train["landed_while_working"]
