"""One progress bar style for every long job: done/total, rate, elapsed and ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s", style="progress.data.speed")


class FieldRateColumn(ProgressColumn):
    """Rate of a counter kept in the task's fields (e.g. tokens), over the task's elapsed time."""

    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field

    def render(self, task: Task) -> Text:
        count, elapsed = task.fields.get(self.field, 0), task.elapsed or 0
        return Text(f"{count / elapsed:,.0f} {self.field}/s" if count and elapsed else "", style="progress.data.speed")


def progress_bar(unit: str = "items", console: Console | None = None, extra_rate: str | None = None) -> Progress:
    """A bar with done/total, %, rate of `unit`, optional rate of a field (`bar.update(t, **{field: n})`), ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        RateColumn(unit),
        *([FieldRateColumn(extra_rate)] if extra_rate else []),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
    )
