"""The `llmr` command line, run in-process as a user would type it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

os.environ["COLUMNS"] = "200"  # rich tables at full width, before the CLI's consoles exist

import pytest
from typer.testing import CliRunner

from llmr.cli import app, main
from llmr.data.directory import DataDir

runner = CliRunner()
RELEASED = Path(__file__).parent / "fixtures" / "released"


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_tasks_list_shows_30_tasks_in_9_categories() -> None:
    out = run("tasks", "list")
    assert "30 LLM-R tasks in 9 categories" in out
    for name in ("natural_questions", "ag_news", "wsc273", "yelp", "gigaword"):
        assert name in out
    yelp_line = next(line for line in out.splitlines() if " yelp " in line)
    assert "Sentiment" in yelp_line and "accuracy" in yelp_line and "cls" in yelp_line and "yes" in yelp_line
    squad_line = next(line for line in out.splitlines() if "squad_v1" in line)
    assert "em_f1" in squad_line and "gen" in squad_line


def test_tasks_list_by_category() -> None:
    out = run("tasks", "list", "--category", "nli")
    assert "rte" in out and "snli" in out and "sst2" not in out


def test_tasks_show_and_unknown_task() -> None:
    out = run("tasks", "show", "sst2")
    assert "Negative, Positive" in out and "Is this movie review sentence negative or positive?" in out
    result = runner.invoke(app, ["tasks", "show", "nope"])
    assert result.exit_code != 0 and "unknown task 'nope'" in result.output


def test_help_explains_every_option() -> None:
    for cmd in (["data", "build"], ["llm", "score"], ["tasks", "list"], ["demo"]):
        out = run(*cmd, "--help")
        assert "--help" in out
    out = run("data", "build", "--help")
    for option in ("--source", "--tasks", "--max-train", "--max-test", "--seed", "--out"):
        assert option in out


def test_data_build_then_inspect(tmp_path: Path) -> None:
    out = run(
        "data", "build", "--source", "samples", "--tasks", "sst2,copa", "--out", str(tmp_path), "--max-train", "4"
    )
    assert "sst2" in out and "copa" in out
    counts = DataDir(tmp_path).validate()
    assert counts == {"passages": 14, "train": 8, "test": 4}
    inspected = run("data", "inspect", str(tmp_path))
    assert "passages" in inspected and "14" in inspected


def test_candidates_redone_when_the_sample_seed_changes(tmp_path: Path) -> None:
    """The per-task sample depends on the seed: another seed is other queries, not "up to date"."""
    run("data", "build", "--source", "samples", "--tasks", "sst2", "--out", str(tmp_path / "data"))
    out = tmp_path / "cands.jsonl"
    mine = ["candidates", "--data", str(tmp_path / "data"), "-o", str(out), "--max-per-task", "2", "--top-n", "3"]
    ids = {}
    for seed in ("1", "7", "1"):
        printed = run(*mine, "--seed", seed)
        assert "up to date" not in printed
        ids[seed] = [c.query_id for c in DataDir(tmp_path).candidates("cands")]
    assert "up to date" in run(*mine, "--seed", "1")
    assert ids["1"] != ids["7"] and len(ids["1"]) == 2


def test_data_inspect_released_fixture() -> None:
    out = run("data", "inspect", str(RELEASED))
    assert "bm25_train" in out and "kd_bm25_train" in out


def test_data_build_unknown_task_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "build", "--source", "samples", "--tasks", "sst3", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "unknown task or category 'sst3'" in str(result.exception)


def test_llm_score_file(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"id": 1, "context": "The capital of France is", "continuation": " Paris"},
        {"id": 2, "context": "The capital of France is", "continuation": " Berlin"},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out_path = tmp_path / "scores.jsonl"
    run("llm", "score", str(pairs), "--out", str(out_path), "--dtype", "fp32")
    scored = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert [s["id"] for s in scored] == [1, 2]
    assert scored[0]["logprob"] > scored[1]["logprob"] and scored[0]["n_tokens"] == 1
    assert scored[0]["mean_logprob"] == pytest.approx(scored[0]["logprob"])


def test_llm_score_bad_line_names_line_and_field(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"context": "a", "continuation": "b"}) + "\n" + json.dumps({"context": "a"}) + "\n")
    result = runner.invoke(app, ["llm", "score", str(pairs), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code != 0 and "pairs.jsonl:2: field 'continuation'" in str(result.exception)


@pytest.mark.slow  # the whole method with the real models, on the sample rows
def test_demo_runs_the_whole_method_and_says_what_it_measured(tmp_path: Path) -> None:
    tiny = ["pipeline.data.source=samples", "pipeline.reward.epochs=1", "eval.resamples=100"]
    out = run("demo", "--out", str(tmp_path), *[a for s in tiny for a in ("--set", s)])
    for method in ("bm25", "dense", "llmr-1", "random", "zero"):
        assert re.search(rf"│ {method} +│ +\d+\.\d │", out), method
    assert re.search(r"The trained retriever is (better than|worse than|not distinguishable from) BM25", out)
    assert (tmp_path / "report.html").is_file() and (tmp_path / "pipeline" / "retriever").exists()
    assert "llmr serve --model" in out and "curl -s localhost:8000/v1/prompt" in out
    # The printed lines run as printed, in a shell where no venv is active.
    use = out[out.index("Use it:") :].splitlines()
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    shown = subprocess.run(use[1].strip(), shell=True, capture_output=True, text=True, env=env)
    assert shown.returncode == 0 and "a gem" in shown.stdout, shown.stderr
    serve = use[2].strip().removesuffix("&").split()
    assert subprocess.run([*serve[:2], "--help"], capture_output=True, env=env).returncode == 0


@pytest.mark.parametrize(
    ("command", "sections"),
    [
        (["train", "retriever"], ["retriever"]),
        (["train", "reward"], ["reward"]),
        (["score"], ["scoring", "llm"]),
        (["candidates"], ["candidates"]),
    ],
)
def test_stage_commands_expose_every_pipeline_setting(command: list[str], sections: list[str]) -> None:
    """Each stage command has an --option per setting of its pipeline sections, generated from them."""
    from llmr.cli.settings import _settings
    from llmr.pipeline.config import PipelineConfig

    out = run(*command, "--help")
    for section in sections:
        for setting in _settings(getattr(PipelineConfig(), section)):
            assert "--" + setting.param.replace("_", "-") in out
            assert f"{section}.{'.'.join(setting.path)}" in out  # the default's source is named
    assert "--max-length" in run("train", "retriever", "--help") and "--config" in out and "--set" in out


def test_stage_settings_precedence_file_then_options_then_set(tmp_path: Path) -> None:
    import typer

    from llmr.cli.settings import stage_settings

    seen = {}
    app_ = typer.Typer()

    @app_.command()
    @stage_settings("retriever")
    def show(retriever, tag: str = typer.Option("x")) -> None:  # type: ignore[no-untyped-def]
        seen.update(config=retriever, tag=tag)

    config = tmp_path / "c.yaml"
    config.write_text("retriever:\n  epochs: 5\n  batch_size: 7\n  groups: {n_negatives: 2}\n")
    invoke = lambda *a: runner.invoke(app_, list(a))  # noqa: E731
    assert invoke("--config", str(config), "--epochs", "6", "--set", "retriever.epochs=9", "--tag", "y").exit_code == 0
    cfg = seen["config"]
    assert (cfg.epochs, cfg.batch_size, cfg.groups.n_negatives, seen["tag"]) == (9, 7, 2, "y")
    assert cfg.groups.drop_same_label_negatives  # the retriever section's nested default, not GroupConfig's
    assert invoke("--no-groups-drop-same-label-negatives", "--loss", "contrastive").exit_code == 0
    assert not seen["config"].groups.drop_same_label_negatives and seen["config"].loss == "contrastive"
    bad = invoke("--loss", "sideways")
    assert bad.exit_code != 0 and "sideways" in bad.output
    bad = invoke("--set", "retriever.epoch=2")
    assert bad.exit_code != 0 and "retriever.epoch" in bad.output


def test_bad_input_is_one_line_on_stderr_not_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    item = '{"id": "p0", "contents": "a\\nb", "task_name": "sst2"}\n'
    (tmp_path / "passages.jsonl").write_text(item * 2)
    run = subprocess.run(
        [sys.executable, "-m", "llmr.cli", "data", "inspect", str(tmp_path)], capture_output=True, text=True
    )
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.strip() == f"llmr: error: {tmp_path / 'passages.jsonl'}:2: field 'id': 'p0' repeats line 1"
    verbose = subprocess.run(
        [sys.executable, "-m", "llmr.cli", "--debug", "data", "inspect", str(tmp_path)], capture_output=True, text=True
    )
    assert "Traceback" in verbose.stderr  # --debug: the whole story


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["eval", "--nope"], "No such option: --nope"),
        (["eval", "--max-per-task", "abc"], "Invalid value for '--max-per-task'"),
        (["eval", "--k", "x"], "Invalid value for --k: expected comma-separated integers, got 'x'"),
        (["tasks", "show"], "Missing argument 'name'"),
        (["nope"], "No such command 'nope'"),
        (["tasks", "show", "nope"], "unknown task 'nope'"),
    ],
)
def test_every_user_mistake_is_one_error_line_with_exit_2(
    args: list[str], says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "argv", ["llmr", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("llmr: error: ") and err.count("\n") == 1 and says in err, err
    monkeypatch.setattr(sys, "argv", ["llmr", "--debug", *args])
    with pytest.raises(Exception):  # noqa: B017  --debug: the exception itself, so Python prints its traceback
        main()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["eval", "--k", "-1"], "Invalid value for --k: -1: Input should be greater than or equal to 1"),
        (["eval", "--k", "4,0"], "Invalid value for --k: 0: Input should be greater than or equal to 1"),
        (["eval", "--max-per-task", "-1"], "Invalid value for --max-per-task: -1"),
        (["eval", "--budget-tokens", "-5"], "Invalid value for --budget-tokens: -5"),
        (
            ["eval", "--encoder-runtime", "openvino", "--query-max-length", "2"],
            "Invalid value for --query-max-length: 2: Input should be greater than or equal to 8",
        ),
        (
            ["eval", "--query-max-length", "128"],
            "--query-max-length: 128: Value error, caps onnx/openvino queries only",
        ),
        (["eval", "--methods", "bm25,dense,lmr"], "unknown method 'lmr'"),
        (
            ["eval", "--methods", "bm25,llmr:runs/does-not-exist"],
            "'runs/does-not-exist' is no local file or folder, "
            "so it was read as a hub id; it is not in the hub cache and HF_HUB_OFFLINE is set",
        ),
        (["data", "build", "--max-train", "-1"], "Invalid value for --max-train: -1"),
        (["data", "build", "--max-pool", "-5"], "Invalid value for --max-pool: -5"),
    ],
)
def test_bounds_and_methods_fail_before_any_work(
    args: list[str], says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eval --k -1` wrote a report for "k = -1"; `data build --max-train -1` built 7,780 rows; a typo in the
    last method failed after minutes of the others. Here the data folder and source do not exist: an error
    about them would mean the work had begun."""
    from huggingface_hub import constants

    monkeypatch.chdir(tmp_path)  # no runs/ here: runs/does-not-exist reads as a hub id
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    where = ["--data", "no-data"] if args[0] == "eval" else ["--source", "no-source/"]
    monkeypatch.setattr(sys, "argv", ["llmr", *args, *where])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("llmr: error: ") and err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "runs").exists()


def test_no_arguments_show_the_help(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for args in ([], ["data"]):
        monkeypatch.setattr(sys, "argv", ["llmr", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == 0 and "Usage: llmr" in capsys.readouterr().out


def _llmr(*args: str, cwd: Path | None = None, env: dict | None = None):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "llmr.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def test_a_missing_local_path_is_an_error_not_a_hub_lookup(tmp_path: Path) -> None:
    from llmr.base.files import local_or_hub_id

    (tmp_path / "runs").mkdir()
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        for spec in ("runs/nope", "./model", "/no/such/model", "a/b/c", "weights.gguf", "~/nope"):
            with pytest.raises(FileNotFoundError, match="not found"):
                local_or_hub_id(spec)
        assert local_or_hub_id("google/gemma-3-270m") == "google/gemma-3-270m"  # a hub id stays one
        assert local_or_hub_id("runs") == "runs"  # it exists
    finally:
        os.chdir(here)
    data = tmp_path / "data"
    run("data", "build", "--source", "samples", "--tasks", "sst2", "--out", str(data), "--max-train", "4")
    env = {**os.environ, "HF_HUB_OFFLINE": "0"}
    got = _llmr("eval", "--data", str(data), "--methods", "llmr:runs/nope", "-o", "out", cwd=tmp_path, env=env)
    assert got.returncode == 2 and got.stderr.strip().splitlines() == [
        "llmr: error: encoder not found: runs/nope (no such file or folder here; a hub id reads owner/name)"
    ]
    debug = _llmr("--debug", "eval", "--data", str(data), "--methods", "llmr:runs/nope", "-o", "out", cwd=tmp_path)
    assert "Traceback" in debug.stderr


def test_data_commands_outside_a_checkout_say_where_they_looked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LLMR_SHARED_DATA"}
    got = _llmr("data", "build", "--source", "shared", "--out", "x", cwd=tmp_path, env=env)
    assert got.returncode == 2 and len(got.stderr.strip().splitlines()) == 1
    assert f"looked for shared/data/llmr-tasks in {tmp_path}" in got.stderr and "LLMR_SHARED_DATA" in got.stderr
    wrong = _llmr("data", "build", "--source", "shared", cwd=tmp_path, env={**env, "LLMR_SHARED_DATA": "/nope"})
    assert wrong.returncode == 2 and wrong.stderr.strip() == "llmr: error: LLMR_SHARED_DATA=/nope: no such folder"
    missing = _llmr("data", "inspect", str(tmp_path / "nope"))
    assert (
        missing.returncode == 2 and missing.stderr.strip() == f"llmr: error: data folder not found: {tmp_path / 'nope'}"
    )


def test_tasks_format_fills_a_template_from_raw_fields() -> None:
    out = run("tasks", "format", "sst2", "sentence=a gem of a film")
    assert out.strip() == 'Review: "a gem of a film" Is this movie review sentence negative or positive?'
    bad = runner.invoke(app, ["tasks", "format", "sst2", "sentense=x"])
    assert bad.exit_code == 2 and "unknown field 'sentense'" in bad.output and "takes sentence" in bad.output
    assert "fields" in run("tasks", "show", "copa") and "premise, question" in run("tasks", "show", "copa")


def test_help_shows_no_type_after_a_flag_and_task_names_stay_whole() -> None:
    assert "<bool>" not in run("serve", "--help") and "<bool>" not in run("train", "retriever", "--help")
    narrow = _llmr("tasks", "list", env={**os.environ, "COLUMNS": "80"})
    assert "natural_questions" in narrow.stdout


@pytest.mark.slow  # real training, ~30 s
def test_training_prints_llmrs_progress_only_and_writes_readable_weights(tmp_path: Path) -> None:
    run("data", "build", "--source", "samples", "--tasks", "sst2,ag_news", "--out", str(tmp_path / "data"))
    run("candidates", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "c.jsonl.gz"), "--top-n", "6")
    out = tmp_path / "retriever"
    args = ["--scores", str(tmp_path / "c.jsonl.gz"), "--data", str(tmp_path / "data"), "--out", str(out)]
    got = _llmr("train", "retriever", *args, "--loss", "contrastive", "--epochs", "1", "--batch-size", "4")
    assert got.returncode == 0, got.stderr
    for noise in ("Computing widget examples", "gather", "{'loss'", "Loading weights", "Writing model shards", "it/s]"):
        assert noise not in got.stderr + got.stdout
    assert "training, loss" in got.stderr and "steps/s" in got.stderr  # llmr's own bar
    assert (out / "model.safetensors").stat().st_mode & 0o044 == 0o044  # readable by others, as the umask says


def test_candidates_top_n_over_the_pool_is_said_not_silently_clamped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run("data", "build", "--source", "samples", "--tasks", "sst2", "--out", str(tmp_path / "data"))
    size = DataDir(tmp_path / "data").validate()["passages"]
    out = str(tmp_path / "c.jsonl")
    printed = run("candidates", "--data", str(tmp_path / "data"), "-o", out, "--top-n", "5000", "--scope", "unified")
    warning = next(r.getMessage() for r in caplog.records if "top_n" in r.getMessage())
    assert "5000" in warning and f"{size} items" in warning
    assert f"(top {size}," in printed and "top 5000" not in printed
