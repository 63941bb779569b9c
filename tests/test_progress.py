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
