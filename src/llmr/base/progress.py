"""One progress bar style for every long job: done/total, rate, elapsed and ETA. Where the output is not a
terminal (CI logs, `| tee`), plain lines instead: one per task every few seconds and when it ends."""

from __future__ import annotations

from typing import Any

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


class LineProgress(Progress):
    """Progress as plain lines (a redrawn bar would be one unreadable line in a log)."""

    def __init__(self, unit: str, console: Console, every_s: float = 10.0) -> None:
        # Tracks tasks and their speed, draws nothing. Jobs that advance in chunks (256 LLM pairs, ~1 min)
        # need a long speed window, or rich has too few samples for a rate or an ETA.
        super().__init__(console=console, disable=True, speed_estimate_period=600)
        self.unit, self.every_s = unit, every_s
        self.last: dict[Any, float] = {}  # when each task's last line went out
        self.ended: set[Any] = set()  # tasks whose final line is out

    def update(self, task_id: Any, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._line(task_id)

    def advance(self, task_id: Any, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._line(task_id)

    def stop(self) -> None:
        for task_id in self.task_ids:
            self._line(task_id, force=True)
        super().stop()

    def _line(self, task_id: Any, force: bool = False) -> None:
        task, now = self._tasks[task_id], self.get_time()
        if task_id in self.ended or not (force or task.finished or now - self.last.get(task_id, -1e9) >= self.every_s):
            return
        self.last[task_id] = now
        if task.finished:
            self.ended.add(task_id)
        speed = task.finished_speed or task.speed
        done = f"{task.completed:,.0f}" + (f"/{task.total:,.0f} ({task.percentage:.0f}%)" if task.total else "")
        rate = f", {speed:,.1f} {self.unit}/s" if speed else ""
        eta = f", ETA {task.time_remaining:,.0f} s" if task.time_remaining and not task.finished else ""
        self.console.print(f"{task.description}: {done}{rate}{eta}", markup=False, highlight=False)


def progress_bar(unit: str = "items", console: Console | None = None, extra_rate: str | None = None) -> Progress:
    """A bar with done/total, %, rate of `unit`, optional rate of a field (`bar.update(t, **{field: n})`), ETA."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        return LineProgress(unit, console)
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
        console=console,
        speed_estimate_period=120,  # see LineProgress
    )
