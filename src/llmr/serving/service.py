"""`llmr serve`: the selector as an HTTP service (FastAPI; OpenAPI schema at /openapi.json, docs at /docs).

    POST /v1/select    {"query": "..."} or {"queries": [...]}, or a raw input filled into a task's template:
                       {"task": "sst2", "fields": {"sentence": "..."}} (or "inputs": [{...}, ...]);
                       k, task, budget_tokens, diversity, balance_labels, order (default best_first)
    POST /v1/prompt    the same request -> LLM-R prompts (the examples, by default the best last, then the query)
    POST /v1/passages  {"passages": [{"query": ..., "answer": ..., "task_name": ...}]} -> added to the pool
                       (off unless `Limits.allow_additions`; then "Authorization: Bearer <token>")
    GET  /healthz, GET /v1/info

Every size is bounded (`Limits`): the body is read as a stream up to its cap, queries x k, each added
passage, the additions in total, and the response's bytes. Requests are validated strictly (no
coercion of "5" or true, no empty or invalid-Unicode strings) and refused with a 4xx that says why.
Concurrent requests are batched: while the selector works on one batch, new requests queue, and the
next batch takes all of them (up to `max_batch_queries`) in one encoder pass. No timer is involved,
so a lone request is not delayed. One worker thread runs the selector, so searches and additions
never overlap.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, Header, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

try:  # httptools, a C parser (uvicorn[standard], with uvloop); h11 is pure Python and ~2x slower per request
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as HTTPProtocol
except ImportError:
    from uvicorn.protocols.http.h11_impl import H11Protocol as HTTPProtocol

from llmr.prompt import build_prompt
from llmr.serving.selector import Order, Selector
from llmr.tasks import TASKS

log = logging.getLogger("llmr.serve")


@dataclass(frozen=True)
class Limits:
    """Every bound the service enforces (shown at GET /v1/info)."""

    max_k: int = 64
    max_queries: int = 256  # per request
    max_results: int = 4096  # queries x k per request
    max_query_chars: int = 8192
    max_passage_chars: int = 16_384  # per added passage
    max_passages: int = 1000  # per POST /v1/passages
    max_added: int = 100_000  # passages added over the service's life
    max_body_bytes: int = 2_000_000  # counted as the body streams in, whatever Content-Length says
    max_response_bytes: int = 32_000_000
    max_batch_queries: int = 512  # per encoder pass, over all queued requests
    max_in_flight: int = 1024  # requests being answered at once; more get a 503 (idle connections do not count)
    read_timeout_s: float = 10.0  # between two chunks of a body
    allow_additions: bool = False  # POST /v1/passages (needs a token)


Text = Annotated[str, Field(min_length=1)]  # strict: a lone surrogate is refused too


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "5" is not an int, true is not a number


class SelectRequest(Strict):
    query: Text | None = Field(None, description="One query as the pool's queries read (a task's filled template).")
    queries: list[Text] | None = Field(None, min_length=1, description="Several queries, answered in order.")
    fields: dict[str, Text] | None = Field(None, description="A raw input, filled into `task`'s template.")
    inputs: list[dict[str, Text]] | None = Field(None, min_length=1, description="Several raw inputs of `task`.")
    task: Text | None = Field(None, description="Only this task's passages; default: the whole pool.")
    k: int = Field(8, ge=1, description="Examples per query.")
    budget_tokens: int | None = Field(None, ge=1, description="Drop the least similar examples to fit.")
    diversity: float | None = Field(None, ge=0.0, le=1.0, description="MMR weight: 0 = by similarity only.")
    balance_labels: bool = Field(False, description="Round-robin over the examples' answers.")
    order: Literal["best_first", "best_last"] | None = Field(
        None, description="Where the best example goes: default best_first for /v1/select, best_last for /v1/prompt."
    )
    _texts: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _one_of(self) -> SelectRequest:
        given = [self.query, self.queries, self.fields, self.inputs]
        if sum(x is not None for x in given) != 1:
            raise ValueError("give exactly one of `query`, `queries`, `fields` and `inputs`")
        if self.fields is not None or self.inputs is not None:
            if self.task not in TASKS:
                raise ValueError(f"`fields` and `inputs` need a known `task` to fill its template, not {self.task!r}")
            self._texts = [TASKS[self.task].format_query(f) for f in self.inputs or [self.fields or {}]]
        else:
            self._texts = [self.query] if self.query is not None else list(self.queries or [])
        return self

    @property
    def texts(self) -> list[str]:
        return self._texts


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
    id: Text | None = None
    contents: Text | None = Field(None, description="`query` + newline + `answer`, or give those two.")
    query: Text | None = None
    answer: Text | None = None
    task_name: Text | None = None

    @model_validator(mode="after")
    def _text(self) -> PassageIn:
        if self.contents is None and (self.query is None or self.answer is None):
            raise ValueError("give `contents`, or both `query` and `answer`")
        return self

    @property
    def size(self) -> int:
        return sum(len(v) for v in (self.contents, self.query, self.answer) if v)


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


class RequestLog:
    """One line per request (method, path, status, ms) at INFO, at most `per_second` lines a second;
    the lines an error storm would add are counted and reported as one."""

    def __init__(self, per_second: int = 50) -> None:
        self.per_second, self.window, self.lines, self.dropped = per_second, 0.0, 0, 0

    def __call__(self, method: str, path: str, status: int, ms: float) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        now = time.monotonic()
        if now - self.window >= 1.0:
            if self.dropped:
                log.warning("%d request lines dropped (over %d a second)", self.dropped, self.per_second)
            self.window, self.lines, self.dropped = now, 0, 0
        if self.lines < self.per_second:
            self.lines += 1
            log.info("%s %s %d %.1f ms", method, path, status, ms)
        else:
            self.dropped += 1


class Guard:
    """ASGI middleware: refuses a request (503) past `max_in_flight`; reads the body as a stream and
    refuses it (413) past `max_body_bytes`, whatever Content-Length claims, or (408) when the client
    stalls; logs each request."""

    def __init__(self, app: Any, limits: Limits) -> None:
        self.app, self.limits, self.log, self.in_flight = app, limits, RequestLog(), 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 0
        if self.in_flight >= self.limits.max_in_flight:
            await _reply(send, 503, f"busy: {self.in_flight} requests in flight; retry shortly")
            return self.log(scope["method"], scope["path"], 503, 1000 * (time.perf_counter() - start))
        self.in_flight += 1

        async def send_logged(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            body = await self._read(scope, receive)
            if isinstance(body, tuple):
                await _reply(send_logged, *body)
            else:
                await self.app(scope, _replay(body, receive), send_logged)
        finally:
            self.in_flight -= 1
            self.log(scope["method"], scope["path"], status, 1000 * (time.perf_counter() - start))

    async def _read(self, scope: dict, receive: Any) -> bytes | tuple[int, str]:
        cap = self.limits.max_body_bytes
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            return 413, f"request body over {cap} bytes"
        chunks, size, more = [], 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), self.limits.read_timeout_s)
            except TimeoutError:
                return 408, f"no body data for {self.limits.read_timeout_s:g} s"
            if message["type"] == "http.disconnect":
                return 400, "the client disconnected"
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                return 413, f"request body over {cap} bytes"
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would

    return replay


async def _reply(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_app(selector: Selector, limits: Limits = Limits(), token: str | None = None) -> FastAPI:
    """The service over `selector`. Additions need `limits.allow_additions` and then `token`, sent as
    "Authorization: Bearer <token>"."""
    if limits.allow_additions and not token:
        raise ValueError("pool additions need a token (llmr serve --token or LLMR_TOKEN)")
    batcher = Batcher(selector, limits.max_batch_queries)
    added = 0

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
    app.add_middleware(Guard, limits=limits)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Any, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default echoes each bad input: up to the whole body, or text that cannot be encoded
        detail = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    def check(request: SelectRequest) -> None:
        texts = request.texts
        if not len(selector):
            raise HTTPException(503, "the pool is empty: nothing to select from")
        if request.k > limits.max_k:
            raise HTTPException(422, f"k = {request.k} is over this service's limit of {limits.max_k}")
        if len(texts) > limits.max_queries:
            raise HTTPException(413, f"{len(texts)} queries in one request; the limit is {limits.max_queries}")
        if len(texts) * request.k > limits.max_results:
            raise HTTPException(413, f"{len(texts)} queries x k = {request.k} is over {limits.max_results} results")
        longest = max(range(len(texts)), key=lambda i: len(texts[i]))
        if len(texts[longest]) > limits.max_query_chars:
            raise HTTPException(422, f"query {longest} has over {limits.max_query_chars} characters")
        if request.task is not None and request.task not in selector.tasks:
            raise HTTPException(422, f"unknown task {request.task!r}; the pool has {', '.join(selector.tasks)}")

    async def choose(request: SelectRequest, order: Order) -> list[list[Any]]:
        check(request)
        try:
            chosen = await batcher.select(request)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        size = sum(len(e.passage.contents) + len(e.passage.id) + 64 for examples in chosen for e in examples)
        if size > limits.max_response_bytes:
            raise HTTPException(413, f"the response would be over {limits.max_response_bytes} bytes; ask for fewer")
        return [examples[::-1] for examples in chosen] if (request.order or order) == "best_last" else chosen

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "pool_size": len(selector)}

    @app.get("/v1/info")
    async def info() -> dict[str, Any]:
        return {**await batcher.call(selector.info), "limits": asdict(limits)}

    @app.post("/v1/select", response_model=SelectResponse)
    async def select(request: SelectRequest) -> SelectResponse:
        return SelectResponse(results=[_out(x) for x in await choose(request, "best_first")])

    @app.post("/v1/prompt", response_model=PromptResponse)
    async def prompt(request: SelectRequest) -> PromptResponse:
        chosen = await choose(request, "best_last")
        texts = [[e.passage.contents for e in examples] for examples in chosen]
        prompts = [build_prompt(ex, q) for q, ex in zip(request.texts, texts, strict=True)]
        return PromptResponse(prompts=prompts, examples=[_out(x) for x in chosen])

    @app.post("/v1/passages", response_model=AddResponse)
    async def add(request: AddRequest, authorization: Annotated[str, Header()] = "") -> AddResponse:
        nonlocal added
        if not limits.allow_additions:
            raise HTTPException(403, "this service does not take additions (start it with --allow-additions)")
        if not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "additions need the header 'Authorization: Bearer <token>'")
        n = len(request.passages)
        if n > limits.max_passages:
            raise HTTPException(413, f"{n} passages; the limit is {limits.max_passages}")
        if added + n > limits.max_added:
            raise HTTPException(413, f"{added} passages added already; the limit is {limits.max_added} in all")
        big = next((i for i, p in enumerate(request.passages) if p.size > limits.max_passage_chars), None)
        if big is not None:
            raise HTTPException(413, f"passage {big} has over {limits.max_passage_chars} characters")
        items = [p.model_dump(exclude_none=True) for p in request.passages]
        try:
            n = await batcher.call(selector.add, items)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        added += n
        return AddResponse(added=n, pool_size=len(selector))

    return app


class HeadTimeout(HTTPProtocol):
    """Closes a connection that sends no request head within `seconds` (uvicorn has no such timeout)."""

    seconds = 10.0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.loop.call_later(self.seconds, self._no_head)

    def _no_head(self) -> None:
        if self.cycle is None and not self.transport.is_closing():
            self.transport.close()


def server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> Any:
    """A uvicorn server whose connections are bounded: idle keep-alive closed after 5 s, a client that sends
    no request head closed after 10 s (slowloris). uvicorn's `limit_concurrency` would count those idle
    connections too (2,000 of them made /healthz answer 503), so `Guard` caps the requests in flight."""
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http=HeadTimeout,
            timeout_keep_alive=5,
            log_level="warning",  # requests are logged by Guard
            access_log=False,
        )
    )


@contextmanager
def background_server(app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run `app` with uvicorn in a thread (tests, benchmarks, notebooks); yields its base URL."""
    import socket
    import threading

    if port == 0:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
    running = server(app, host, port)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not running.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=10)
