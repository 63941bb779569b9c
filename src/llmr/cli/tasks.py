"""`llmr tasks list|show`."""

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
    for col in ("task", "category", "metric", "mode", "held-out", "label words"):
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
        "label words": ", ".join(task.label_words) or "-",
        "filters": task.filters or "-",
        "HF dataset": f"{task.hf_dataset}" + (f" ({task.hf_config})" if task.hf_config else ""),
        "splits": ", ".join(f"{k} <- {v}" for k, v in task.hf_splits.items()),
    }
    table = Table(title=task.name, show_header=False)
    for key, value in rows.items():
        table.add_row(key, value)
    console.print(table)
