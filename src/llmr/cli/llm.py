"""`llmr llm score`: use the LLM core directly on a file of (context, continuation) pairs."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import typer
from rich.console import Console

from llmr.base.progress import progress_bar
from llmr.data.jsonl import DataFileError, read_jsonl, write_jsonl
from llmr.distributed.engine import Engine, LocalEngine, RayEngine
from llmr.llm import BACKENDS, DEFAULT_LLM, DTYPE_HELP, MODEL_HELP, load_llm

app = typer.Typer(help="Score continuations with a causal LM.", no_args_is_help=True)
console = Console()


def backend_options(backend: str, dtype: str, batch_tokens: int) -> dict[str, object]:
    if backend not in BACKENDS:
        raise typer.BadParameter(f"known backends: {', '.join(BACKENDS)}", param_hint="--backend")
    return {"dtype": dtype, "batch_tokens": batch_tokens} if backend == "hf" else {}


@app.command("score")
def score_cmd(
    pairs: Path = typer.Argument(..., help="JSONL file, one object per line with 'context' and 'continuation'."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="JSONL output: each input line plus logprob, n_tokens, mean_logprob."
    ),
    model: str = typer.Option(DEFAULT_LLM, help=MODEL_HELP),
    backend: str = typer.Option("hf", help="LLM backend."),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    batch_tokens: int = typer.Option(8192, help="Token budget of one forward pass (padded length x batch)."),
    chunk: int = typer.Option(256, help="Pairs handed to the scorer at a time (progress granularity)."),
) -> None:
    """log p(continuation | context) for every pair in a file."""
    rows = list(read_jsonl(pairs))
    for line, row in enumerate(rows, start=1):
        for field in ("context", "continuation"):
            if not isinstance(row.get(field), str):
                raise DataFileError(pairs, line, field, "missing or not a string")
    llm = load_llm(model, backend, **backend_options(backend, dtype, batch_tokens))
    with progress_bar("pairs") as bar:
        task = bar.add_task("scoring", total=len(rows))
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            scores = llm.score([r["context"] for r in part], [r["continuation"] for r in part])
            for row, s in zip(part, scores, strict=True):
                row.update(logprob=s.logprob, n_tokens=s.n_tokens, mean_logprob=s.mean)
            bar.advance(task, len(part))
    write_jsonl(out, rows)
    console.print(f"scored {len(rows)} pairs with {llm.fingerprint} -> {out}")


ENGINE = typer.Option(
    "local", help="local: the LLM in this process; ray: one LLM replica per Ray worker (pip install 'llmr[ray]')."
)
ADDRESS = typer.Option(None, help="ray: join this cluster ('auto', 'ray://head:10001'); default: start a local one.")
WORKERS = typer.Option(None, help="ray: LLM replicas (default: as many as the cluster's CPUs or GPUs hold).")
CPUS_PER_WORKER = typer.Option(1.0, help="ray: CPUs per replica (its torch threads).")
GPUS_PER_WORKER = typer.Option(0.0, help="ray: GPUs per replica (1 for vLLM or hf on a GPU cluster).")


def make_engine(
    engine: str,
    model: str,
    backend: str,
    options: dict[str, object],
    address: str | None,
    workers: int | None,
    cpus_per_worker: float,
    gpus_per_worker: float,
) -> Engine:
    """The LLM in this process, or a factory for it handed to Ray actors (each builds its own replica)."""
    if engine == "local":
        return LocalEngine(load_llm(model, backend, **options))
    if engine == "ray":
        factory = partial(load_llm, model, backend, **options)
        return RayEngine(factory, workers, cpus_per_worker, gpus_per_worker, address)
    raise typer.BadParameter("expected 'local' or 'ray'", param_hint="--engine")
