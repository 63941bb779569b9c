"""The `llmr` command line: one sub-command group per stage."""

from __future__ import annotations

import logging
import os
import sys

# The libraries' tqdm bars ("Loading weights", "Writing model shards", ...) in the middle of llmr's own
# progress: off for the command line (read when tqdm is first imported, so before anything else).
os.environ.setdefault("TQDM_DISABLE", "1")

import click
import typer
import typer.core

from llmr.cli import candidates, data, demo, evaluate, export, llm, pipeline, report, score, serve, tasks, train

_option_type = typer.core.TyperOption.display_type_rich


def _flag_type(self: typer.core.TyperOption, ctx: click.Context) -> str | None:
    return None if self.is_flag else _option_type(self, ctx)


typer.core.TyperOption.display_type_rich = _flag_type  # typer 0.29 prints "<bool>" after a flag, which takes none

app = typer.Typer(
    name="llmr",
    help="Learn which in-context examples to show a large language model (LLM-R).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(tasks.app, name="tasks")
app.add_typer(data.app, name="data")
app.add_typer(llm.app, name="llm")
app.add_typer(train.app, name="train")
app.command("candidates")(candidates.candidates)
app.command("score")(score.score)
app.command("demo")(demo.demo)
app.command("pipeline")(pipeline.pipeline)
app.command("eval")(evaluate.eval_cmd)
app.command("study")(pipeline.study)
app.command("serve")(serve.serve)
app.command("export")(export.export_cmd)
app.command("report")(report.report)


@app.callback()
def _main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what each stage does."),
    debug: bool = typer.Option(False, "--debug", help="Show an error's full traceback, not one line."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


# What bad input raises (a malformed line, a wrong setting, a missing file, an extra not installed): one
# line naming what is wrong, not a traceback. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, KeyError, OSError, ImportError, RuntimeError)


def main() -> None:
    """The `llmr` entry point: `app` with user errors shown as one line (--debug shows the traceback)."""
    try:
        app(standalone_mode=True)
    except USER_ERRORS as exc:
        if "--debug" in sys.argv[1:]:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"llmr: error: {message}", file=sys.stderr)
        sys.exit(2)
