"""The `llmr` command line: one sub-command group per stage."""

from __future__ import annotations

import logging

import typer

from llmr.cli import candidates, data, demo, evaluate, llm, pipeline, score, serve, tasks, train

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


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what each stage does.")) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
