"""`llmr tasks list|show|format`."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from llmr.tasks import CATEGORIES, TASKS, get_task

app = typer.Typer(help="The 30 LLM-R tasks: categories, metrics, modes, templates.", no_args_is_help=True)
console = Console()


@app.command("list")
def list_tasks(
    category: str = typer.Option(None, help="Only tasks of this category (e.g. NLI)."),
) -> None:
    """Every task with its category, metric, mode and held-out flag."""
    table = Table(title=f"{len(TASKS)} LLM-R tasks in {len(CATEGORIES)} categories")
    table.add_column("task", no_wrap=True)  # a name must stay whole (natural_questions at 80 columns)
    for col in ("category", "metric", "mode", "held-out", "label words"):
        table.add_column(col)
    for task in TASKS.values():
        if category and task.category.lower() != category.lower():
            continue
        table.add_row(
            task.name,
            task.category,
            task.metric,
            task.mode,
            "yes" if task.held_out else "",
            ", ".join(task.label_words),
        )
    console.print(table)


@app.command("show")
def show(name: str = typer.Argument(..., help="Task name, e.g. sst2.")) -> None:
    """One task in full: template, label words, filters, HF dataset and splits."""
    try:
        task = get_task(name)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="NAME") from None
    rows = {
        "category": task.category,
        "metric": task.metric,
        "mode": task.mode,
        "held out": "yes" if task.held_out else "no",
        "template": repr(task.template),
        "fields": ", ".join(task.template_fields) + f"  (llmr tasks format {task.name} FIELD=VALUE ...)",
        "label words": ", ".join(task.label_words) or "-",
        "filters": task.filters or "-",
        "HF dataset": f"{task.hf_dataset}" + (f" ({task.hf_config})" if task.hf_config else ""),
        "splits": ", ".join(f"{k} <- {v}" for k, v in task.hf_splits.items()),
    }
    table = Table(title=task.name, show_header=False)
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)


@app.command("format")
def format_query(
    name: str = typer.Argument(..., help="Task name, e.g. sst2."),
    fields: list[str] = typer.Argument(..., help="The template's fields as FIELD=VALUE (sst2: sentence=...)."),
) -> None:
    """A raw input as the task's query (its template filled), ready for `llmr serve` or `Selector.select`."""
    try:
        task = get_task(name)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="NAME") from None
    bad = next((f for f in fields if "=" not in f), None)
    if bad is not None:
        raise typer.BadParameter(f"{bad!r}: give FIELD=VALUE", param_hint="FIELDS")
    try:
        typer.echo(task.format_query(dict(f.split("=", 1) for f in fields)))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="FIELDS") from None
