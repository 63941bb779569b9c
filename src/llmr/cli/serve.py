"""`llmr serve`: the trained retriever as an HTTP example-selection service."""

from __future__ import annotations

import logging
import re
import resource
from itertools import combinations
from pathlib import Path

import typer
from rich.console import Console

from llmr.base.runtime import RUNTIME_HELP, RUNTIMES, serving_runtime
from llmr.serving import Selector
from llmr.serving.selector import PoolSource

console = Console(stderr=True)
DEFAULT_POOL = "default"  # llmr.serving.service's: that module needs the [serve] extra, so it is imported late
NAMED = re.compile(r"([A-Za-z0-9_-]+)=(.+)")  # --pool NAME=PATH, --index-dir NAME=DIR


def serve(
    model: str = typer.Option(
        "all-minilm-l6-v2", "--model", "-m", help="A trained retriever folder (runs/pipeline/retriever) or encoder."
    ),
    pool: list[str] = typer.Option(
        None,
        help="The pool: a passages .jsonl[.gz] file or a data folder. NAME=PATH, repeated, serves separate "
        'pools; a request picks one with "pool": NAME, else gets the bare PATH\'s (or the first given).',
    ),
    saved: list[str] = typer.Option(
        None,
        "--index-dir",
        help="Keep the encoded pool here: the first start saves it, later ones load it without encoding; "
        "passages added over HTTP are kept here too. Without it, additions last until the service stops. "
        "NAME=DIR for a named pool (each pool its own folder, none inside another).",
    ),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; the default serves this machine only."),
    port: int = typer.Option(8000, min=1, max=65535, help="TCP port."),
    index: str = typer.Option("flat", help="flat (exact) or hnsw (approximate, for large pools)."),
    tokenizer: str = typer.Option(None, help="HF tokenizer counting budget_tokens (default: the encoder's)."),
    runtime: str = typer.Option(
        "auto", help=RUNTIME_HELP + " auto: openvino, else onnx, else torch (what is installed)."
    ),
    query_max_length: int = typer.Option(
        None, min=8, help="Cap a query's tokens (onnx/openvino runtimes): the long tail."
    ),
    max_k: int = typer.Option(64, min=1, help="Largest k a request may ask for."),
    max_queries: int = typer.Option(256, min=1, help="Most queries in one request."),
    max_pool_size: int = typer.Option(200_000, min=1, help="Additions past this many passages (per pool) get 507."),
    max_concurrent_requests: int = typer.Option(
        32,  # Limits.max_in_flight's default; to be measured (issue 35: benchmarks/serving.py)
        min=1,
        help="Requests answered at once, those waiting for the encoder included (not /healthz, not bodies still "
        "arriving); more get 503 with Retry-After at once, rather than waiting in a queue.",
    ),
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

    runtime = serving_runtime() if runtime == "auto" else runtime
    if runtime not in RUNTIMES:
        raise typer.BadParameter(f"expected one of {', '.join(RUNTIMES)}", param_hint="--runtime")
    if index not in ("flat", "hnsw"):
        raise typer.BadParameter("expected flat or hnsw", param_hint="--index")
    if log_level.upper() not in logging.getLevelNamesMapping():
        raise typer.BadParameter("expected debug, info, warning or error", param_hint="--log-level")
    if allow_additions and not token:
        raise typer.BadParameter("--allow-additions needs a secret: --token or LLMR_TOKEN", param_hint="--token")
    if host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/] binding {host}: selection requests are not authenticated")
    pools, folders = _named(pool or [], "--pool"), _named(saved or [], "--index-dir")
    with console.status("loading the pool"):
        selectors = open_pools(model, pools, folders, index, tokenizer, runtime, query_max_length)
    for name, selector in selectors.items():
        label = f"pool {name!r}: " if len(selectors) > 1 else ""
        console.print(f"{label}{len(selector):,} passages, {len(selector.tasks)} tasks")
        if allow_additions and name not in folders:
            console.print(f"[yellow]note:[/] {label}added passages are kept in memory only (--index-dir keeps them)")
    console.print(f"http://{host}:{port}/docs")
    limits = Limits(
        max_k=max_k,
        max_queries=max_queries,
        max_pool_size=max_pool_size,
        max_in_flight=max_concurrent_requests,
        allow_additions=allow_additions,
    )
    _log_requests(log_level)
    _raise_open_files_limit()  # many idle clients must not exhaust file descriptors
    server(create_app(selectors, limits, token), host, port).run()


def _named(values: list[str], option: str) -> dict[str, Path]:
    """NAME=PATH values by name; a bare PATH (or one that exists as written) is the default pool's."""
    out: dict[str, Path] = {}
    for value in values:
        match = NAMED.fullmatch(value)
        name, path = (match[1], match[2]) if match and not Path(value).exists() else (DEFAULT_POOL, value)
        if name in out:
            raise typer.BadParameter(f"pool {name!r} is given twice", param_hint=option)
        out[name] = Path(path)
    return out


def open_pools(
    model: str,
    pools: dict[str, Path],
    folders: dict[str, Path],
    index: str = "flat",
    tokenizer: str | None = None,
    runtime: str = "torch",
    query_max_length: int | None = None,
) -> dict[str, Selector]:
    """Each named pool's selector (`open_selector`), the default pool first (else the first named): every
    pool's paths are checked before any is encoded, and no two pools may share (or nest) an --index-dir,
    since saving one replaces its whole folder."""
    names = list(dict.fromkeys([*pools, *folders])) or [DEFAULT_POOL]
    if DEFAULT_POOL in names:  # the bare --pool is the default, wherever it was given
        names.insert(0, names.pop(names.index(DEFAULT_POOL)))
    for (a, x), (b, y) in combinations(((n, f.resolve()) for n, f in folders.items()), 2):
        if x == y or x in y.parents or y in x.parents:
            raise typer.BadParameter(f"pools {a!r} and {b!r} need folders of their own", param_hint="--index-dir")
    for name in names:
        _check_pool(pools.get(name), folders.get(name), name)
    return {
        name: open_selector(model, pools.get(name), folders.get(name), index, tokenizer, runtime, query_max_length)
        for name in names
    }


def open_selector(
    model: str,
    pool: PoolSource | None,
    saved: Path | None,
    index: str = "flat",
    tokenizer: str | None = None,
    runtime: str = "torch",
    query_max_length: int | None = None,
) -> Selector:
    """The selector `llmr serve` answers with: loaded from `saved` if a selector was saved there (no `pool`
    then), else built from `model` and `pool` (and saved there); with `saved`, additions are kept there."""
    if _check_pool(pool, saved):
        selector = Selector.load(saved, runtime=runtime, query_max_length=query_max_length)  # type: ignore[arg-type]
    else:
        selector = Selector.load(model, pool, index, 128, tokenizer, runtime, query_max_length)  # type: ignore[arg-type]
        if saved is not None:
            selector.save(saved)
    if saved is not None:
        selector.keep_additions(saved)
    return selector


def _check_pool(pool: PoolSource | None, saved: Path | None, name: str = DEFAULT_POOL) -> bool:
    """Whether the pool is loaded from `saved`; refuses, before anything is encoded, a pool that cannot be."""
    label = "" if name == DEFAULT_POOL else f"pool {name!r}: "
    if saved is not None and Selector.is_saved(saved):
        if pool is not None:
            raise typer.BadParameter(f"{label}{saved} already holds a pool; drop --pool, or give a new --index-dir")
        return True
    if pool is None:
        raise typer.BadParameter(
            f"{label}give the pool to serve, or an --index-dir it was saved to", param_hint="--pool"
        )
    if isinstance(pool, str | Path) and not Path(pool).exists():
        raise typer.BadParameter(f"{label}{pool} does not exist", param_hint="--pool")
    return False


def _log_requests(level: str) -> None:
    """The service's own logger at `level`, with timestamps: `llmr`'s logging was set up before this command
    ran (warnings only, unless -v), so a second `basicConfig` would do nothing."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    service = logging.getLogger("llmr.serve")
    service.setLevel(level.upper())
    service.handlers[:] = [handler]
    service.propagate = False  # once, not again by the root's handler


def _raise_open_files_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
