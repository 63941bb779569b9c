"""`llmr report`: one self-contained HTML page for an eval, pipeline or study folder, or comparing two runs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from llmr.evaluation.html import write_comparison, write_html_report

console = Console(stderr=True)


def report(
    runs: list[Path] = typer.Argument(
        ..., help="An eval, pipeline or study folder (runs/quality, runs/eval, ...); two: a page comparing them."
    ),
    out: Path = typer.Option(None, "--out", "-o", help="The page (default: RUN/report.html; RUN_A/compare-B.html)."),
    resamples: int = typer.Option(1000, min=1, help="Two runs: paired bootstrap resamples for the CIs."),
) -> None:
    """Metadata, summary with CIs, sortable tables, plots, the pipeline's stages, per-query outcomes (CSV, JSON) and
    an explorer; with RUN_A RUN_B, their differences with paired CIs on the queries both scored."""
    if len(runs) > 2:
        raise typer.BadParameter(f"one run, or two to compare; got {len(runs)}", param_hint="RUNS")
    for run in runs:
        if not run.is_dir():
            raise typer.BadParameter(f"{run} is not a folder", param_hint="RUNS")
    try:
        page = write_html_report(runs[0], out) if len(runs) == 1 else write_comparison(*runs, out, resamples)
    except (FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="RUNS") from None
    console.print(f"report -> {page}")
