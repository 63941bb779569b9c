"""`llmr serve`: the trained retriever as an HTTP example-selection service."""

from __future__ import annotations

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
    read_only: bool = typer.Option(False, "--read-only", help="Refuse POST /v1/passages."),
) -> None:
    """Serve POST /v1/select, /v1/prompt, /v1/passages, GET /v1/info and /healthz (OpenAPI at /docs)."""
    try:
        import uvicorn

        from llmr.serving.service import Limits, create_app  # FastAPI: the optional [serve] extra
    except ImportError as exc:
        raise typer.BadParameter(f"{exc}: install the serve extra, pip install 'llmr[serve]'") from None

    if index not in ("flat", "hnsw"):
        raise typer.BadParameter("expected flat or hnsw", param_hint="--index")
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] binding {host}: the service has no authentication")
    with console.status(f"encoding the pool with {model}"):
        selector = Selector.load(model, pool, index=index, tokenizer=tokenizer)  # type: ignore[arg-type]
    console.print(f"{len(selector):,} passages, {len(selector.tasks)} tasks; http://{host}:{port}/docs")
    limits = Limits(max_k=max_k, max_queries=max_queries, read_only=read_only)
    uvicorn.run(create_app(selector, limits), host=host, port=port, log_level="warning")
