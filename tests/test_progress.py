"""Progress: a bar on a terminal, plain lines in a log."""

from __future__ import annotations


def test_progress_outside_a_terminal_is_plain_lines_with_rate_and_eta() -> None:
    import io
    import time

    from rich.console import Console

    from llmr.base.progress import LineProgress, progress_bar

    out = io.StringIO()
    with progress_bar("pairs", Console(file=out, force_terminal=False)) as bar:
        assert isinstance(bar, LineProgress)
        bar.every_s = 0.05
        task = bar.add_task("scoring", total=6)
        for _ in range(6):
            time.sleep(0.03)
            bar.advance(task)
    lines = out.getvalue().splitlines()
    assert 2 <= len(lines) <= 7 and "\x1b" not in out.getvalue() and "\r" not in out.getvalue()
    assert "pairs/s, ETA" in lines[-2] and lines[-1].startswith("scoring: 6/6 (100%), ")
    assert not isinstance(progress_bar("pairs", Console(file=io.StringIO(), force_terminal=True)), LineProgress)


def test_progress_gives_a_rate_and_eta_when_chunks_come_minutes_apart() -> None:
    """LLM scoring advances by 256 pairs every ~80 s: rich's default 30 s speed window saw no rate."""
    import io

    from rich.console import Console

    from llmr.base.progress import progress_bar

    clock = [0.0]
    out = io.StringIO()
    bar = progress_bar("pairs", Console(file=out, force_terminal=False))
    bar.get_time = lambda: clock[0]
    task = bar.add_task("scoring", total=1024)
    for _ in range(3):
        clock[0] += 80.0
        bar.advance(task, 256)
    lines = out.getvalue().splitlines()
    assert "3.2 pairs/s" in lines[-1] and "ETA 80 s" in lines[-1], lines
