"""`llmr data build|inspect`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llmr.cli.settings import options_as
from llmr.data.build import BuildConfig, build
from llmr.data.directory import DataDir
from llmr.data.sources import open_source
from llmr.pipeline.config import DataSection
from llmr.tasks import resolve_tasks

app = typer.Typer(help="Build the LLM-R data files and check data folders.", no_args_is_help=True)
console = Console()


@app.command("build")
def build_cmd(
    out: Path = typer.Option(Path("runs/data"), "--out", "-o", help="Folder to write passages/train/test into."),
    source: str = typer.Option(
        "shared",
        help="Where rows come from: 'shared' (the offline copy found in ../shared/data/llmr-tasks or "
        "$LLMR_SHARED_DATA), 'hub' (HuggingFace datasets, needs a network), or a folder laid out as "
        "<task>/<split>.jsonl[.gz] with rows in each task's HF schema. Several, comma-separated "
        "(e.g. 'shared,extra-tasks/'): a task is read from the first that has it.",
    ),
    tasks: str = typer.Option(
        "all-available",
        help="Comma-separated task names, a category, 'all', or 'all-available' (every task the source has).",
    ),
    max_train: int = typer.Option(30_000, help="Most training queries per task (the paper's cap); 0 = no cap."),
    max_test: int = typer.Option(0, help="Most test queries per task; 0 = no cap."),
    max_pool: int = typer.Option(0, help="Most pool items per task (a seeded sample); 0 = every train row."),
    seed: int = typer.Option(42, help="Seed for the per-task samples."),
) -> None:
    """Write passages.jsonl.gz (the pool: every task's train rows, or a sample), train.jsonl.gz,
    test.jsonl.gz and a manifest."""
    caps = options_as(  # the pipeline's rule for the caps, checked before any row is read; 0: no cap
        DataSection, max_train=max_train or None, max_test=max_test or None, max_pool=max_pool or None
    )
    row_source = open_source(source)
    chosen = resolve_tasks(tasks, available=row_source.available())
    config = BuildConfig(
        tasks=tuple(t.name for t in chosen),
        source=row_source.describe(),
        max_train=caps.max_train,
        max_test=caps.max_test,
        max_pool=caps.max_pool,
        seed=seed,
    )
    with console.status(f"building {len(chosen)} tasks from {row_source.describe()}"):
        counts = build(row_source, chosen, out, config)
    table = Table(title=f"{out}: {len(counts)} tasks")
    for col in ("task", "pool", "train", "test"):
        table.add_column(col, justify="right" if col != "task" else "left")
    for name, c in counts.items():
        table.add_row(name, str(c["pool"]), str(c["train"]), str(c["test"]))
    table.add_row("total", *(str(sum(c[k] for c in counts.values())) for k in ("pool", "train", "test")))
    console.print(table)


@app.command("inspect")
def inspect_cmd(
    folder: Path = typer.Argument(..., help="A data folder (built by llmr or released by the LLM-R authors)."),
) -> None:
    """Validate every JSONL file of a data folder against the contract and count its rows."""
    counts = DataDir(folder).validate()
    table = Table(title=str(folder))
    table.add_column("file")
    table.add_column("rows", justify="right")
    for name, n in counts.items():
        table.add_row(name, f"{n:,}")
    console.print(table)
