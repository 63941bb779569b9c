"""The `llmr` command line: one sub-command group per stage."""

from __future__ import annotations

import logging
import os
import sys

# The libraries' tqdm bars ("Loading weights", "Writing model shards", ...) in the middle of llmr's own
# progress: off for the command line (read when tqdm is first imported, so before anything else).
os.environ.setdefault("TQDM_DISABLE", "1")

import typer

from llmr.cli import candidates, data, demo, evaluate, export, llm, pipeline, report, score, serve, tasks, train

app = typer.Typer(
    name="llmr",
    help="Learn which in-context examples to show a large language model (LLM-R).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help (rich's shows "<bool>" after a flag); errors: `main`
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


# What bad input raises (a malformed line, a wrong setting, a missing file, an extra not installed) and
# click's usage errors (an unknown option, a bad value): one line naming what is wrong, exit 2, not a
# traceback. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, KeyError, OSError, ImportError, RuntimeError, typer.TyperException)


def main() -> None:
    """The `llmr` entry point: `app` with user errors shown as one line (--debug shows the traceback)."""
    try:
        code = app(prog_name="llmr", standalone_mode=False)
    except typer.Abort:
        print("llmr: aborted", file=sys.stderr)
        sys.exit(1)
    except USER_ERRORS as exc:
        ctx = getattr(exc, "ctx", None)  # a usage error's command
        if ctx is not None and str(exc) == ctx.get_help():  # `llmr`, `llmr data`: no_args_is_help
            print(exc)
            sys.exit(0)
        if "--debug" in sys.argv[1:]:
            raise
        message = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
        if isinstance(exc, typer.TyperException):
            message = exc.format_message()  # with the option it is about
        if ctx is not None:
            message += f" (see {ctx.command_path} --help)"
        print("llmr: error:", "; ".join(line.strip() for line in message.splitlines() if line.strip()), file=sys.stderr)
        sys.exit(2)
    sys.exit(code if isinstance(code, int) else 0)
