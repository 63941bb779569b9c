"""`llmr serve`: the trained retriever as an HTTP example-selection service."""

from __future__ import annotations

import logging
import resource
from pathlib import Path

import typer
from rich.console import Console

from llmr.serving import Selector

console = Console(stderr=True)


def serve(
    model: str = typer.Option(
        "all-minilm-l6-v2", "--model", "-m", help="A trained retriever folder (runs/pipeline/retriever) or encoder."
    ),
    pool: Path = typer.Option(..., help="The pool: a passages .jsonl[.gz] file or a data folder."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; the default serves this machine only."),
    port: int = typer.Option(8000, help="TCP port."),
    index: str = typer.Option("flat", help="flat (exact) or hnsw (approximate, for large pools)."),
    tokenizer: str = typer.Option(None, help="HF tokenizer counting budget_tokens (default: the encoder's)."),
    max_k: int = typer.Option(64, help="Largest k a request may ask for."),
    max_queries: int = typer.Option(256, help="Most queries in one request."),
    allow_additions: bool = typer.Option(
        False, "--allow-additions", help="Take POST /v1/passages (with the token as 'Authorization: Bearer')."
    ),
    token: str = typer.Option(None, envvar="LLMR_TOKEN", help="The secret additions need."),
    log_level: str = typer.Option("info", help="info: one line per request; warning: errors only."),
) -> None:
    """Serve POST /v1/select, /v1/prompt, /v1/passages, GET /v1/info and /healthz (OpenAPI at /docs)."""
    try:
        from llmr.serving.service import Limits, create_app, server  # FastAPI: the optional [serve] extra
    except ImportError as exc:
        raise typer.BadParameter(f"{exc}: install the serve extra, pip install 'llmr[serve]'") from None

    if index not in ("flat", "hnsw"):
        raise typer.BadParameter("expected flat or hnsw", param_hint="--index")
    if allow_additions and not token:
        raise typer.BadParameter("--allow-additions needs a secret: --token or LLMR_TOKEN", param_hint="--token")
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] binding {host}: selection requests are not authenticated")
    with console.status(f"encoding the pool with {model}"):
        selector = Selector.load(model, pool, index=index, tokenizer=tokenizer)  # type: ignore[arg-type]
    console.print(f"{len(selector):,} passages, {len(selector.tasks)} tasks; http://{host}:{port}/docs")
    limits = Limits(max_k=max_k, max_queries=max_queries, allow_additions=allow_additions)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    _raise_open_files_limit()  # many idle clients must not exhaust file descriptors
    server(create_app(selector, limits, token), host, port).run()


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
