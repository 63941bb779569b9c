"""`llmr pipeline`: data -> candidates -> LLM scores -> reward model -> retriever, N iterations."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.console import Console

from llmr.pipeline import Pipeline, PipelineConfig
from llmr.pipeline.study import Study, StudyConfig

console = Console()


def pipeline(
    config: Path = typer.Argument(None, help="YAML config (see configs/); without one, the defaults."),
    out: Path = typer.Option(Path("runs/pipeline"), "--out", "-o", help="Run folder: one sub-folder per stage."),
    iterations: int = typer.Option(None, help="Override `iterations`."),
    overrides: list[str] = typer.Option(
        None, "--set", help="Override one setting, e.g. --set retriever.learning_rate=1e-5 (repeatable)."
    ),
    cache: Path = typer.Option(None, help="LLM score cache (SQLite). Default: $LLMR_CACHE/scores.sqlite."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the full, validated config and stop."),
) -> None:
    """Run LLM-R end to end. Finished stages are skipped; a changed setting redoes only what depends on it."""
    overrides = list(overrides or []) + ([f"iterations={iterations}"] if iterations else [])
    try:
        cfg = PipelineConfig.load(config, overrides)
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="CONFIG / --set") from None
    if show_config:
        console.print(yaml.safe_dump(cfg.dump(), sort_keys=False), end="")
        return
    Pipeline(cfg, out, cache=cache).run()


def study(
    config: Path = typer.Argument(None, help="Study YAML: `pipeline` and `eval` sections (see benchmarks/quality/)."),
    out: Path = typer.Option(Path("runs/study"), "--out", "-o", help="Study folder: pipeline/ and eval/ (study.md)."),
    overrides: list[str] = typer.Option(
        None, "--set", help="Override one setting, e.g. --set eval.k=[4,8] or --set pipeline.llm.model=smollm2-135m."
    ),
    until: str = typer.Option("eval", help="'pipeline' stops after training (run the evaluation later)."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the full, validated config and stop."),
) -> None:
    """The whole benchmark: the LLM-R pipeline, then every selector evaluated, then study.md.
    Resumes where it stopped; finished stages and cached outcomes are not redone."""
    if until not in ("pipeline", "eval"):
        raise typer.BadParameter("expected 'pipeline' or 'eval'", param_hint="--until")
    try:
        cfg = StudyConfig.load(config, list(overrides or []))
    except (ValueError, OSError) as exc:
        raise typer.BadParameter(str(exc), param_hint="CONFIG / --set") from None
    if show_config:
        console.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), end="")
        return
    Study(cfg, out).run(until)  # type: ignore[arg-type]
    if until == "eval":
        report = out / cfg.eval.name / "study.md"
        console.print(report.read_text())
        console.print(f"study -> {report}")
