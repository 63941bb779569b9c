"""`llmr serve`: the selector as an HTTP service (FastAPI; OpenAPI schema at /openapi.json, docs at /docs).

    POST /v1/select    {"query": "..."} or {"queries": [...]}, k, task, budget_tokens, diversity, balance_labels
    POST /v1/prompt    the same request -> LLM-R prompts (examples, most similar last, then the query)
    POST /v1/passages {"passages": [{"query": ..., "answer": ..., "task_name": ...}]} -> added to the pool
    GET  /healthz, GET /v1/info

Requests are validated (unknown fields, sizes, k, tasks) and refused with a 4xx that says why.
Concurrent requests are batched: while the selector works on one batch, new requests queue, and the
next batch takes all of them (up to `max_batch_queries`) in one encoder pass. No timer is involved,
so a lone request is not delayed. One worker thread runs the selector, so searches and additions
never overlap.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmr.prompt import build_prompt
from llmr.serving.selector import Selector


@dataclass(frozen=True)
class Limits:
    max_k: int = 64
    max_queries: int = 256  # per request
    max_query_chars: int = 8192
    max_passages: int = 1000  # per POST /v1/passages
    max_body_bytes: int = 2_000_000
    max_batch_queries: int = 512  # per encoder pass, over all queued requests
    read_only: bool = False  # refuse POST /v1/passages


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SelectRequest(Strict):
    query: str | None = Field(None, min_length=1, description="One query; or `queries`.")
    queries: list[str] | None = Field(None, min_length=1, description="Several queries, answered in order.")
    task: str | None = Field(None, description="Only this task's passages; default: the whole pool.")
    k: int = Field(8, ge=1, description="Examples per query.")
    budget_tokens: int | None = Field(None, ge=1, description="Drop the least similar examples to fit.")
    diversity: float | None = Field(None, ge=0.0, le=1.0, description="MMR weight: 0 = by similarity only.")
    balance_labels: bool = Field(False, description="Round-robin over the examples' answers.")

    @model_validator(mode="after")
    def _one_of(self) -> SelectRequest:
        if (self.query is None) == (self.queries is None):
            raise ValueError("give exactly one of `query` and `queries`")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.query] if self.query is not None else list(self.queries or [])


class ExampleOut(BaseModel):
    id: str
    contents: str
    task_name: str
    score: float


class SelectResponse(BaseModel):
    results: list[list[ExampleOut]]


class PromptResponse(BaseModel):
    prompts: list[str]
    examples: list[list[ExampleOut]]


class PassageIn(Strict):
    id: str | None = Field(None, min_length=1)
    contents: str | None = Field(None, min_length=1, description="`query` + newline + `answer`, or give those two.")
    query: str | None = None
    answer: str | None = None
    task_name: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _text(self) -> PassageIn:
        if self.contents is None and (self.query is None or self.answer is None):
            raise ValueError("give `contents`, or both `query` and `answer`")
        return self


class AddRequest(Strict):
    passages: list[PassageIn] = Field(min_length=1)


class AddResponse(BaseModel):
    added: int
    pool_size: int


class Batcher:
    """Queues select requests and runs them in batches on one worker thread."""

    def __init__(self, selector: Selector, max_queries: int) -> None:
        self.selector = selector
        self.max_queries = max_queries
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="llmr-selector")
        self.queue: asyncio.Queue = asyncio.Queue()

    async def select(self, request: SelectRequest) -> list[list[Any]]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((request, future))
        return await future

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0][0].texts)
            while size < self.max_queries and not self.queue.empty():
                batch.append(self.queue.get_nowait())
                size += len(batch[-1][0].texts)
            groups: dict[tuple, list] = defaultdict(list)  # requests with the same options share a pass
            for request, future in batch:
                options = (request.k, request.budget_tokens, request.diversity, request.balance_labels)
                groups[options].append((request, future))
            for (k, budget, diversity, balance), items in groups.items():
                queries = [q for r, _ in items for q in r.texts]
                tasks = [r.task for r, _ in items for _ in r.texts]
                work = partial(self.selector.select_many, queries, k, tasks, budget, diversity, balance)
                try:
                    results = await self.call(work)
                except Exception as exc:  # e.g. an unknown task: fail only this group's requests
                    for _, future in items:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                start = 0
                for request, future in items:
                    n = len(request.texts)
                    if not future.done():
                        future.set_result(results[start : start + n])
                    start += n


def _out(examples: list[Any]) -> list[ExampleOut]:
    return [ExampleOut(**e.passage.model_dump(), score=e.score) for e in examples]


def create_app(selector: Selector, limits: Limits = Limits()) -> FastAPI:
    batcher = Batcher(selector, limits.max_batch_queries)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = asyncio.create_task(batcher.run())
        yield
        worker.cancel()
        batcher.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="llmr example selector",
        version="1",
        description="In-context examples chosen by a retriever trained with LLM feedback (LLM-R).",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limits.max_body_bytes):
            return JSONResponse({"detail": f"request body over {limits.max_body_bytes} bytes"}, status_code=413)
        return await call_next(request)

    def check(request: SelectRequest) -> None:
        texts = request.texts
        if request.k > limits.max_k:
            raise HTTPException(422, f"k = {request.k} is over this service's limit of {limits.max_k}")
        if len(texts) > limits.max_queries:
            raise HTTPException(413, f"{len(texts)} queries in one request; the limit is {limits.max_queries}")
        longest = max(range(len(texts)), key=lambda i: len(texts[i]))
        if len(texts[longest]) > limits.max_query_chars:
            raise HTTPException(422, f"query {longest} has over {limits.max_query_chars} characters")
        if request.task is not None and request.task not in selector.tasks:
            raise HTTPException(422, f"unknown task {request.task!r}; the pool has {', '.join(selector.tasks)}")

    async def choose(request: SelectRequest) -> list[list[Any]]:
        check(request)
        try:
            return await batcher.select(request)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "pool_size": len(selector)}

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        return {**await batcher.call(selector.info), "limits": asdict(limits)}

    @app.post("/v1/select", response_model=SelectResponse)
    async def select(request: SelectRequest) -> SelectResponse:
        return SelectResponse(results=[_out(x) for x in await choose(request)])

    @app.post("/v1/prompt", response_model=PromptResponse)
    async def prompt(request: SelectRequest) -> PromptResponse:

        chosen = await choose(request)
        texts = [[e.passage.contents for e in examples][::-1] for examples in chosen]
        prompts = [build_prompt(ex, q) for q, ex in zip(request.texts, texts, strict=True)]
        return PromptResponse(prompts=prompts, examples=[_out(x) for x in chosen])

    @app.post("/v1/passages", response_model=AddResponse)
    async def add(request: AddRequest) -> AddResponse:
        if limits.read_only:
            raise HTTPException(403, "this service is read-only (started with --read-only)")
        if len(request.passages) > limits.max_passages:
            raise HTTPException(413, f"{len(request.passages)} passages; the limit is {limits.max_passages}")
        items = [p.model_dump(exclude_none=True) for p in request.passages]
        try:
            added = await batcher.call(selector.add, items)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        return AddResponse(added=added, pool_size=len(selector))

    return app


@contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` with uvicorn in a thread (tests, benchmarks, notebooks); yields its base URL."""
    import socket
    import threading
    import time

    import uvicorn

    if port == 0:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
