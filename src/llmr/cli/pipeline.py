"""`llmr pipeline`: data -> candidates -> LLM scores -> reward model -> retriever, N iterations."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from rich.console import Console

from llmr.pipeline import Pipeline, PipelineConfig

console = Console()


def pipeline(
    config: Path = typer.Argument(None, help="YAML config (see configs/); without one, the defaults."),
    out: Path = typer.Option(Path("runs/pipeline"), "--out", "-o", help="Run folder: one sub-folder per stage."),
    iterations: int = typer.Option(None, help="Override `iterations`."),
    overrides: list[str] = typer.Option(
        None, "--set", help="Override one setting, e.g. --set retriever.learning_rate=1e-5 (repeatable)."
    ),
    cache: Path = typer.Option(None, help="LLM score cache (SQLite). Default: $LLMR_CACHE/scores.sqlite."),
    show_config: bool = typer.Option(False, "--show-config", help="Print the full, validated config and stop."),
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
    Pipeline(cfg, out, cache=cache).run()
