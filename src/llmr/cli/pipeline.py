"""`llmr pipeline`: data -> candidates -> LLM scores -> reward model -> retriever, N iterations."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
import yaml
from rich.console import Console
from rich.table import Table

from llmr.cli.llm import Placement, make_engine, placement_options
from llmr.distributed.engine import Engine
from llmr.evaluation.html import write_html_report
from llmr.pipeline import Pipeline, PipelineConfig
from llmr.pipeline.config import LLMSection
from llmr.pipeline.plan import CONFIRM_ABOVE_S, plan
from llmr.pipeline.study import Study, StudyConfig

console = Console()
PLAN = typer.Option(False, "--plan", help="Print each stage's work and estimated time; run nothing.")
YES = typer.Option(False, "--yes", "-y", help="Start a run estimated over an hour without asking.")


def confirm_plan(pipeline: Pipeline, only_show: bool, yes: bool, data_only: bool = False) -> bool:
    """Show the plan when asked or when what is left to run is long; a long run starts only when confirmed
    (or --yes). Stages finished in the run folder count as done; `data_only`: the run needs only the data
    stage (a study of baselines and given retrievers). Returns whether to run."""
    stages, done = plan(pipeline.config), pipeline.finished()
    stages = [s for s in stages if s.name == "data"] if data_only else stages
    total = sum(s.seconds for s in stages if s.name not in done)
    if not only_show and (total <= CONFIRM_ABOVE_S or yes):
        return True
    table = Table(title=f"plan for {pipeline.out} (estimated on 2 CPU cores)")
    for column in ("stage", "work", "estimate"):
        table.add_column(column, justify="right" if column == "estimate" else "left")
    for s in stages:
        table.add_row(s.name, s.work, "done" if s.name in done else _duration(s.seconds))
    table.add_row("total left", "", _duration(total), style="bold")
    console.print(table)
    if only_show:
        return False
    if not sys.stdin.isatty():
        raise typer.BadParameter(
            f"this run is estimated at {_duration(total)}: add --yes to start it", param_hint="--yes"
        )
    return typer.confirm(f"Start a run of about {_duration(total)}?", abort=True)


def llm_engine(llm: LLMSection, placement: Placement) -> Engine | None:
    """`--engine ray`: the config's LLM as Ray replicas (scoring and evaluation); local: None (loaded when needed)."""
    if placement.engine == "local":
        return None
    return make_engine(placement, llm.model, llm.backend, llm.options())


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.0f} min"


@placement_options
def pipeline(
    config: Path = typer.Argument(
        None, help="A YAML config, or a shipped one by name (cpu-6tasks); without one, the paper's scale."
    ),
    out: Path = typer.Option(Path("runs/pipeline"), "--out", "-o", help="Run folder: one sub-folder per stage."),
    iterations: int = typer.Option(None, help="Override `iterations`."),
    overrides: list[str] = typer.Option(
        None, "--set", help="Override one setting, e.g. --set retriever.learning_rate=1e-5 (repeatable)."
    ),
    cache: Path = typer.Option(None, help="LLM score cache (SQLite). Default: $LLMR_CACHE/scores.sqlite."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the full, validated config and stop."),
    only_plan: bool = PLAN,
    yes: bool = YES,
    placement: Placement = None,  # type: ignore[assignment]  # its options: @placement_options
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
    if confirm_plan(Pipeline(cfg, out), only_plan, yes):
        llm = llm_engine(cfg.llm, placement)
        try:
            Pipeline(cfg, out, llm=llm, cache=cache).run()
        finally:
            if llm is not None:
                llm.close()
        console.print(f"report -> {write_html_report(out)}")


@placement_options
def study(
    config: Path = typer.Argument(None, help="Study YAML: `pipeline` and `eval` sections (see benchmarks/quality/)."),
    out: Path = typer.Option(Path("runs/study"), "--out", "-o", help="Study folder: pipeline/ and eval/ (study.md)."),
    overrides: list[str] = typer.Option(
        None, "--set", help="Override one setting, e.g. --set eval.k=[4,8] or --set pipeline.llm.model=smollm2-135m."
    ),
    until: str = typer.Option("eval", help="'pipeline' stops after training (run the evaluation later)."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the full, validated config and stop."),
    only_plan: bool = PLAN,
    yes: bool = YES,
    placement: Placement = None,  # type: ignore[assignment]  # its options: @placement_options
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
    study = Study(cfg, out)
    data_only = until == "eval" and not study.needs_pipeline
    if not confirm_plan(study.pipeline, only_plan, yes, data_only):  # the pipeline's part; evaluation on top
        return
    llm = llm_engine(cfg.pipeline.llm, placement)
    separate = cfg.eval.llm not in (None, cfg.pipeline.llm.model)
    eval_llm = llm_engine(cfg.pipeline.llm.model_copy(update={"model": cfg.eval.llm}), placement) if separate else None
    try:
        Study(cfg, out, llm=llm, eval_llm=eval_llm).run(until)  # type: ignore[arg-type]
    finally:
        for engine_ in (llm, eval_llm):
            if engine_ is not None:
                engine_.close()
    if until == "eval":
        report = out / cfg.eval.name / "study.md"
        console.print(report.read_text())
        console.print(f"study -> {report}")
    console.print(f"report -> {write_html_report(out)}")
