"""`llmr serve`: the selector as an HTTP service (FastAPI; OpenAPI schema at /openapi.json, endpoints at /docs).

    POST /v1/select    {"query": "..."} or {"queries": [...]}, or a raw input filled into a task's template:
                       {"task": "sst2", "fields": {"sentence": "..."}} (or "inputs": [{...}, ...]);
                       k, task, budget_tokens, diversity, balance_labels, order (default best_first)
    POST /v1/prompt    the same request -> LLM-R prompts (the examples, by default the best last, then the query)
    POST /v1/passages  {"passages": [{"query": ..., "answer": ..., "task_name": ...}]} -> added to the pool
                       (off unless `Limits.allow_additions`; then "Authorization: Bearer <token>")
    GET  /healthz, GET /v1/info (?pool=NAME)

Several separate pools can be served at once (`create_app({"news": ..., "reviews": ...})`): each request
names one with "pool" (default: the first). They share the worker thread and the limits (`max_pool_size`
is per pool).

Every size and time is bounded (`Limits`): a request's head and its whole body must arrive within their
deadlines (`Connection`, `Guard`), the body is read as a stream up to its cap, queries x k, each added
passage, the pool's size, connections per client address, every endpoint's response bytes, and the
requests in flight (past `max_in_flight`, 503 with Retry-After at once: load is shed, not queued). /docs is a
plain page (no CDN scripts), so it works offline. Requests are validated strictly (no
coercion of "5" or true, no empty or invalid-Unicode strings) and refused with a 4xx that says why.
Concurrent requests are batched: while the selector works on one batch, new requests queue, and the
next batch takes all of them (up to `max_batch_queries`) in one encoder pass. No timer is involved,
so a lone request is not delayed. One worker thread runs the selector, so searches and additions
never overlap.
"""

from __future__ import annotations

import asyncio
import hmac
import html
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from typing import Annotated, Any, ClassVar, Literal

import orjson
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

try:  # httptools, a C parser (uvicorn[standard], with uvloop); h11 is pure Python and ~2x slower per request
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as HTTPProtocol
except ImportError:
    from uvicorn.protocols.http.h11_impl import H11Protocol as HTTPProtocol

from llmr.evaluation.selectors import check_queries
from llmr.prompt import build_prompt
from llmr.serving.selector import Order, Selector
from llmr.tasks import TASKS

log = logging.getLogger("llmr.serve")
DEFAULT_POOL = "default"  # the name of a pool given without one (create_app(selector), llmr serve --pool PATH)
RETRY_AFTER_S = 1  # a shed request's Retry-After: a batch takes milliseconds, so a second later there is room


@dataclass(frozen=True)
class Limits:
    """Every bound the service enforces (shown at GET /v1/info)."""

    max_k: int = 64
    max_queries: int = 256  # per request
    max_results: int = 4096  # queries x k per request
    max_query_chars: int = 8192
    max_passage_chars: int = 16_384  # per added passage
    max_passages: int = 1000  # per POST /v1/passages
    max_pool_size: int = 200_000  # passages, additions included: past it, additions get 507
    max_body_bytes: int = 2_000_000  # counted as the body streams in, whatever Content-Length says
    max_response_bytes: int = 32_000_000  # every endpoint's body
    max_batch_queries: int = 512  # per encoder pass, over all queued requests
    # requests being answered, queued for the worker included (bodies still arriving do not count); past it
    # 503 + Retry-After at once (llmr serve --max-concurrent-requests). 32: at the ~128 select/s issue 35
    # measured, 32 waiting is ~250 ms by Little's law; to be measured (issue 35, benchmarks/serving.py).
    max_in_flight: int = 32
    max_buffered_bytes: int = 256_000_000  # body bytes held by requests still arriving, all together
    head_timeout_s: float = 10.0  # a request head (line and headers) must arrive within this
    body_timeout_s: float = 10.0  # its whole body within this, however it trickles
    max_head_bytes: int = 65_536
    max_connections_per_client: int = 256  # per client address; past it the oldest idle one is closed
    allow_additions: bool = False  # POST /v1/passages (needs a token)


Text = Annotated[str, Field(min_length=1)]  # strict: a lone surrogate is refused too


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "5" is not an int, true is not a number


PoolName = Annotated[Text | None, Field(None, description="One of the service's pools, by name; default: its first.")]


class SelectRequest(Strict):
    pool: PoolName
    query: Text | None = Field(None, description="One query as the pool's queries read (a task's filled template).")
    queries: list[Text] | None = Field(None, min_length=1, description="Several queries, answered in order.")
    fields: dict[str, Text] | None = Field(None, description="A raw input, filled into `task`'s template.")
    inputs: list[dict[str, Text]] | None = Field(None, min_length=1, description="Several raw inputs of `task`.")
    task: Text | None = Field(None, description="Only this task's passages; default: the whole pool.")
    k: int = Field(8, ge=1, description="Examples per query.")
    budget_tokens: int | None = Field(None, ge=1, description="Drop the least similar examples to fit.")
    diversity: float | None = Field(None, ge=0.0, le=1.0, description="MMR weight: 0 = by similarity only.")
    balance_labels: bool = Field(False, description="Round-robin over the examples' answers.")
    where: dict[str, Text] | None = Field(
        None, description='Only pool items whose fields have these values, e.g. {"id": "..."}; before the search.'
    )
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
    rank: int = Field(description="Its place by similarity (1 = most similar); diversity may pick out of order.")


class SelectResponse(BaseModel):
    results: list[list[ExampleOut]]
    warnings: list[str] = Field([], description="E.g. k over the items there are: what there is is returned.")


class PromptResponse(BaseModel):
    prompts: list[str]
    examples: list[list[ExampleOut]]
    warnings: list[str] = []


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
        return sum(len(v) for v in (self.contents, self.query, self.answer, self.id, self.task_name) if v)


class AddRequest(Strict):
    pool: PoolName
    passages: list[PassageIn] = Field(min_length=1)


class AddResponse(BaseModel):
    added: int
    pool_size: int


class Batcher:
    """Queues select requests (each for its pool's selector) and runs them in batches on one worker thread."""

    def __init__(self, max_queries: int) -> None:
        self.max_queries = max_queries
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="llmr-selector")
        self.queue: asyncio.Queue = asyncio.Queue()

    async def select(self, selector: Selector, request: SelectRequest) -> list[list[Any]]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((selector, request, future))
        return await future

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def run(self) -> None:
        while True:
            batch = [await self.queue.get()]
            size = len(batch[0][1].texts)
            while size < self.max_queries and not self.queue.empty():
                batch.append(self.queue.get_nowait())
                size += len(batch[-1][1].texts)
            groups: dict[tuple, list] = defaultdict(list)  # requests to one pool with the same options share a pass
            for selector, request, future in batch:
                where = tuple(sorted(request.where.items())) if request.where else None
                options = (selector, request.k, request.budget_tokens, request.diversity, request.balance_labels, where)
                groups[options].append((request, future))
            for (selector, k, budget, diversity, balance, where), items in groups.items():
                queries = [q for r, _ in items for q in r.texts]
                tasks = [r.task for r, _ in items for _ in r.texts]
                work = partial(
                    selector.select_many,
                    queries,
                    k,
                    tasks,
                    budget,
                    diversity,
                    balance,
                    where=dict(where) if where else None,
                )
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


class JSON(Response):
    """A JSON body written by orjson: NaN and infinities become null, as Pydantic writes them. The hot endpoints
    return it with plain dicts, so neither the response models nor FastAPI's check of them is built per request
    (their schemas stay in /openapi.json). Not FastAPI's ORJSONResponse: deprecated, and as the default class
    it would turn off FastAPI's own Pydantic serialization of the other endpoints."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _out(examples: list[Any]) -> list[dict[str, Any]]:
    """`ExampleOut`s as dicts (extra pool fields are left out, as the model leaves them)."""
    return [
        {
            "id": e.passage.id,
            "contents": e.passage.contents,
            "task_name": e.passage.task_name,
            "score": float(e.score),  # a NumPy float would not serialize
            "rank": int(e.rank),
        }
        for e in examples
    ]


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
    """ASGI middleware. The body is read first, as a stream: refused (413) past `max_body_bytes` whatever
    Content-Length claims, or (408) when the whole of it has not arrived within `body_timeout_s`, however
    it trickles. Only then does a request count as in flight (503 past `max_in_flight`), so clients that
    trickle bodies hold no share of the capacity, only their bytes (`max_buffered_bytes` in all); /healthz
    is never refused. A response over `max_response_bytes` becomes a 413, whatever the endpoint. Each
    request is logged."""

    def __init__(self, app: Any, limits: Limits) -> None:
        self.app, self.limits, self.log = app, limits, RequestLog()
        self.in_flight = self.buffered = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status, refused = time.perf_counter(), 0, False

        async def send_bounded(message: dict) -> None:
            nonlocal status, refused
            if message["type"] == "http.response.start":
                length = int(dict(message["headers"]).get(b"content-length", b"0"))
                if length > self.limits.max_response_bytes:  # nothing is sent yet: refuse instead
                    status, refused = 413, True
                    return await _reply(send, 413, f"the response would be over {self.limits.max_response_bytes} bytes")
                status = message["status"]
            if not refused:
                await send(message)

        try:
            body = await self._read(scope, receive)
            if isinstance(body, tuple):
                await _reply(send_bounded, *body)
            elif self.in_flight >= self.limits.max_in_flight and scope["path"] != "/healthz":
                # shed, not queued: waiting would only add latency; the body was read, so keep the connection
                busy = f"busy: {self.in_flight} requests in flight; retry after {RETRY_AFTER_S} s"
                await _reply(send_bounded, 503, busy, keep_alive=True)
            else:
                self.in_flight += 1
                try:
                    await self.app(scope, _replay(body, receive), send_bounded)
                finally:
                    self.in_flight -= 1
        finally:
            self.log(scope["method"], scope["path"], status, 1000 * (time.perf_counter() - start))

    async def _read(self, scope: dict, receive: Any) -> bytes | tuple[int, str]:
        cap, seconds = self.limits.max_body_bytes, self.limits.body_timeout_s
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            return 413, f"request body over {cap} bytes"
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(seconds):  # the whole body, not each chunk: a trickle is cut off too
                more = True
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return 400, "the client disconnected"
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    self.buffered += len(chunk)
                    chunks.append(chunk)
                    if size > cap:
                        return 413, f"request body over {cap} bytes"
                    if self.buffered > self.limits.max_buffered_bytes:
                        return 503, "busy: too many request bodies arriving at once; retry shortly"
                    more = message.get("more_body", False)
        except TimeoutError:
            return 408, f"the request body did not arrive within {seconds:g} s"
        finally:
            self.buffered -= size
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


async def _reply(send: Any, status: int, detail: str, keep_alive: bool = False) -> None:
    """A one-line JSON error. Every 503 here means busy, so it says when to retry."""
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(b"retry-after", str(RETRY_AFTER_S).encode())] if status == 503 else []
    headers += [] if keep_alive else [(b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _docs_page(schema: dict[str, Any]) -> str:
    """/docs without scripts (Swagger UI would come from a CDN): each endpoint, and the schema's link."""
    rows = "".join(
        f"<li><code>{method.upper()} {html.escape(path)}</code> {html.escape(op.get('summary', ''))}</li>"
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    )
    title = html.escape(schema["info"]["title"])
    return (
        f"<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1>"
        f"<p>{html.escape(schema['info'].get('description', ''))}</p><ul>{rows}</ul>"
        '<p>Request and response schemas: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3; '
        "any OpenAPI viewer or client generator reads it).</p>"
    )


def create_app(
    selector: Selector | Mapping[str, Selector], limits: Limits = Limits(), token: str | None = None
) -> FastAPI:
    """The service over `selector`, or over several named pools (requests without "pool" get the first).
    Additions need `limits.allow_additions` and then `token`, sent as "Authorization: Bearer <token>"."""
    if limits.allow_additions and not token:
        raise ValueError("pool additions need a token (llmr serve --token or LLMR_TOKEN)")
    pools = dict(selector) if isinstance(selector, Mapping) else {DEFAULT_POOL: selector}
    if not pools:
        raise ValueError("no pool to serve")
    batcher = Batcher(limits.max_batch_queries)

    def pool_of(name: str | None) -> Selector:
        if name is None:
            return next(iter(pools.values()))
        if name not in pools:
            raise HTTPException(422, f"unknown pool {name!r}; this service has {', '.join(pools)}")
        return pools[name]

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
        docs_url=None,  # FastAPI's Swagger page loads its scripts from a CDN: blank offline
        redoc_url=None,
    )
    app.state.limits = limits  # for `server`: the connection bounds
    app.add_middleware(Guard, limits=limits)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Any, exc: RequestValidationError) -> JSON:
        # FastAPI's default echoes each bad input: up to the whole body, or text that cannot be encoded
        detail = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSON({"detail": detail}, status_code=422)

    def check(request: SelectRequest) -> Selector:
        texts, selector = request.texts, pool_of(request.pool)
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
        try:  # here, not in the batch: one bad request must not fail the others batched with it
            check_queries(texts)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return selector

    def warnings(request: SelectRequest) -> list[str]:
        notice = pool_of(request.pool).shortfall(request.k, request.task, request.where or None)
        return [notice] if notice else []

    async def choose(request: SelectRequest, order: Order, prompts: bool = False) -> list[list[Any]]:
        selector = check(request)
        try:
            chosen = await batcher.select(selector, request)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        # refused before the response is built (Guard would refuse it after): a prompt repeats its examples
        copies = 2 if prompts else 1
        size = sum(copies * len(e.passage.contents.encode()) + len(e.passage.id) + 64 for ex in chosen for e in ex)
        size += sum(len(q.encode()) for q in request.texts) if prompts else 0
        if size > limits.max_response_bytes:
            raise HTTPException(413, f"the response would be over {limits.max_response_bytes} bytes; ask for fewer")
        return [examples[::-1] for examples in chosen] if (request.order or order) == "best_last" else chosen

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> str:
        return _docs_page(app.openapi())

    @app.get("/healthz", response_model=dict[str, Any], summary="Liveness and the pools' sizes (never refused as busy)")
    async def healthz() -> JSON:
        sizes = {name: len(s) for name, s in pools.items()}
        return JSON({"status": "ok", "pool_size": next(iter(sizes.values())), "pools": sizes})  # pool_size: the first

    @app.get("/v1/info", summary="The encoder, a pool's tasks (?pool=NAME; default: the first), the index, limits")
    async def info(pool: str | None = None) -> dict[str, Any]:
        return {**await batcher.call(pool_of(pool).info), "pools": list(pools), "limits": asdict(limits)}

    @app.post("/v1/select", response_model=SelectResponse, summary="The k examples for each query")
    async def select(request: SelectRequest) -> JSON:
        chosen = await choose(request, "best_first")
        return JSON({"results": [_out(x) for x in chosen], "warnings": warnings(request)})

    @app.post("/v1/prompt", response_model=PromptResponse, summary="LLM-R prompts: the examples, then the query")
    async def prompt(request: SelectRequest) -> JSON:
        chosen = await choose(request, "best_last", prompts=True)
        texts = [[e.passage.contents for e in examples] for examples in chosen]
        prompts = [build_prompt(ex, q) for q, ex in zip(request.texts, texts, strict=True)]
        return JSON({"prompts": prompts, "examples": [_out(x) for x in chosen], "warnings": warnings(request)})

    @app.post("/v1/passages", response_model=AddResponse, summary="Add passages to the pool (needs the token)")
    async def add(request: AddRequest, authorization: Annotated[str, Header()] = "") -> AddResponse:
        if not limits.allow_additions:
            raise HTTPException(403, "this service does not take additions (start it with --allow-additions)")
        if not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "additions need the header 'Authorization: Bearer <token>'")
        n = len(request.passages)
        if n > limits.max_passages:
            raise HTTPException(413, f"{n} passages; the limit is {limits.max_passages}")
        big = next((i for i, p in enumerate(request.passages) if p.size > limits.max_passage_chars), None)
        if big is not None:
            raise HTTPException(413, f"passage {big} has over {limits.max_passage_chars} characters")
        items = [p.model_dump(exclude_none=True) for p in request.passages]
        selector = pool_of(request.pool)

        def add_within_limit() -> int:  # on the worker thread, so concurrent additions cannot overshoot
            if len(selector) + len(items) > limits.max_pool_size:
                raise HTTPException(507, f"the pool is full: {limits.max_pool_size} passages at most")
            return selector.add(items)

        try:
            n = await batcher.call(add_within_limit)
        except ValueError as exc:
            raise HTTPException(409, str(exc)) from None
        except OSError as exc:  # the journal could not be written (a full disk): nothing was added
            log.error("an addition was not stored: %s", exc)
            raise HTTPException(507, f"could not store the passages ({exc.strerror or exc}); none added") from None
        return AddResponse(added=n, pool_size=len(selector))

    return app


class Connection(HTTPProtocol):
    """uvicorn's HTTP protocol with the bounds uvicorn lacks: each request head (the first, and the next on a
    kept-alive connection) must arrive within `head_timeout_s` and `max_head_bytes`, however slowly it
    trickles (uvicorn's keep-alive timer stops at the first byte); and one client address holds at most
    `max_connections_per_client` connections: past that its oldest idle one is closed (a client flooding
    idle sockets cannot lock itself, or a proxy's other users, out), or, if none is idle, the new one."""

    limits = Limits()
    clients: ClassVar[dict[str, dict[Connection, None]]] = {}  # per server: `server` makes a subclass for each

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()
        mine = self.clients.setdefault(self.client[0] if self.client else "", {})
        if len(mine) >= self.limits.max_connections_per_client:
            idle = next((c for c in mine if c._idle() and not c.transport.is_closing()), None)
            if idle is None:
                return self.transport.close()
            idle.transport.close()
        mine[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_timer.cancel()
        mine = self.clients.get(self.client[0] if self.client else "", {})
        mine.pop(self, None)
        if not mine:
            self.clients.pop(self.client[0] if self.client else "", None)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is self._awaited and self._idle():  # the next head is still incomplete
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes and not self.transport.is_closing():
                self.transport.close()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_timer.cancel()
        self._await_head()

    def _await_head(self) -> None:
        # the last request (or None): a new head makes a new `cycle`; a pipelined one still running is not idle
        self._awaited, self._head_bytes = self.cycle, 0
        self._head_timer = self.loop.call_later(self.limits.head_timeout_s, self._head_late, self.cycle)

    def _head_late(self, awaited: Any) -> None:
        if self.cycle is awaited and self._idle() and not self.transport.is_closing():
            self.transport.close()

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete


def server(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> uvicorn.Server:
    """A uvicorn server whose connections are bounded (`Connection`: request heads, connections per client;
    uvicorn's `timeout_keep_alive` closes idle kept-alive ones). uvicorn's `limit_concurrency` would count
    idle and trickling connections too (2,000 of them made /healthz answer 503), so `Guard` caps the
    requests being answered instead."""
    limits: Limits = getattr(app.state, "limits", Limits())
    bounded = type("Connection", (Connection,), {"limits": limits, "clients": {}})
    return uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            http=bounded,
            timeout_keep_alive=5,
            h11_max_incomplete_event_size=limits.max_head_bytes,  # the same bound when h11 parses
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
