"""`llmr report`: one self-contained HTML page for an eval, pipeline or study folder."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from llmr.evaluation.html import write_html_report

console = Console(stderr=True)


def report(
    run: Path = typer.Argument(..., help="An eval, pipeline or study folder (runs/quality, runs/eval, ...)."),
    out: Path = typer.Option(None, "--out", "-o", help="The HTML file (default: RUN/report.html)."),
) -> None:
    """Summary with CIs, per-task and per-category tables, plots, the pipeline's stages and a per-query explorer."""
    console.print(f"report -> {write_html_report(run, out)}")
