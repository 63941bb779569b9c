"""`llmr llm score`: use the LLM core directly on a file of (context, continuation) pairs."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from llmr.base.progress import progress_bar
from llmr.cli.settings import with_parameters
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


@dataclass(frozen=True)
class Placement:
    """Where the LLM runs: in this process (local) or as one replica per Ray worker (ray)."""

    engine: str = "local"
    address: str | None = None
    workers: int | None = None
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0


_PLACEMENT_OPTIONS = {
    "engine": (str, "local: the LLM in this process; ray: one LLM replica per Ray worker (pip install 'llmr\\[ray]')."),
    "address": (str, "ray: join this cluster ('auto', 'ray://head:10001'); default: start a local one."),
    "workers": (int, "ray: LLM replicas (default: as many as the cluster's CPUs or GPUs hold)."),
    "cpus_per_worker": (float, "ray: CPUs per replica (its torch threads)."),
    "gpus_per_worker": (float, "ray: GPUs per replica (1 for vLLM or hf on a GPU cluster)."),
}


KEYWORD = inspect.Parameter.KEYWORD_ONLY


def placement_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command --engine, --address, --workers, --cpus-per-worker, --gpus-per-worker; it receives
    them as one `placement` keyword argument."""
    defaults = asdict(Placement())
    extra = [
        inspect.Parameter(name, KEYWORD, default=typer.Option(defaults[name], help=help), annotation=kind)
        for name, (kind, help) in _PLACEMENT_OPTIONS.items()
    ]

    @functools.wraps(command)
    def run(**kwargs: Any) -> Any:
        placement = Placement(**{name: kwargs.pop(name) for name in _PLACEMENT_OPTIONS})
        if placement.engine not in ("local", "ray"):
            raise typer.BadParameter("expected 'local' or 'ray'", param_hint="--engine")
        return command(**kwargs, placement=placement)

    return with_parameters(run, command, drop={"placement"}, extra=extra)


def make_engine(placement: Placement, model: str, backend: str, options: dict[str, object]) -> Engine:
    """The LLM in this process, or a factory for it handed to Ray actors (each builds its own replica)."""
    if placement.engine == "local":
        return LocalEngine(load_llm(model, backend, **options))
    factory = partial(load_llm, model, backend, **options)
    p = placement
    return RayEngine(factory, p.workers, p.cpus_per_worker, p.gpus_per_worker, p.address)
