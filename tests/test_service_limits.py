"""`llmr serve` under attack and at its limits: trickling clients, connections per address, request heads,
load shed past the requests in flight, response sizes of every endpoint, the additions journal (Unicode, a
full disk, restarts), the CLI's bounds and request log, and /docs offline (issues 33, 34 and 35)."""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

import llmr

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from llmr.serving.service import Limits, background_server, create_app  # noqa: E402
from test_serving import _encoded  # noqa: E402

TOKEN = "s3cret"
AUTH = {"authorization": f"Bearer {TOKEN}"}
REVIEWS = ["a warm and funny film", "tedious and far too long", "a boring film with wooden acting", "a joy"]


def pool(n: int = 12, chars: int = 0) -> list[dict]:
    pad = " lorem" * (chars // 6)
    return [
        {"id": f"p{i}", "query": REVIEWS[i % 4] + pad, "answer": ["Positive", "Negative"][i % 2], "task_name": "sst2"}
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def selector() -> llmr.Selector:
    return llmr.Selector.load("all-minilm-l6-v2", pool())


def address(url: str) -> tuple[str, int]:
    return urlsplit(url).hostname or "", urlsplit(url).port or 0


@pytest.fixture
def many_files() -> Iterator[None]:
    """Room for ~2,300 sockets in this process (1,100 client ends, 1,100 server ends)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"the open-files limit ({hard}) is too low for 1,100 sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- trickling clients, connections, heads ---------------------------------------------------------


def _poll(sock: socket.socket, data: bytes = b"") -> bytes | None:
    """Send `data`; what the server sent back (b"" once it closed), or None while it is still listening."""
    try:
        if data:
            sock.send(data)
        sock.setblocking(False)
        return sock.recv(200)
    except BlockingIOError:
        return None
    except OSError:
        return b""  # reset
    finally:
        sock.setblocking(True)


def test_1100_trickling_clients_leave_healthz_and_select_answered_and_are_cut_off(
    selector: llmr.Selector, many_files: None
) -> None:
    """Issue 33: ~1,100 bodies trickled a byte at a time filled the in-flight cap (503 for everyone, /healthz
    too), and a timeout between chunks let one socket live for a minute. Now bodies still arriving hold no
    capacity, and each is cut off once its whole-body deadline passes, however often it sends a byte."""
    deadline_s = 12.0
    head = b"POST /v1/select HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"
    with background_server(create_app(selector, Limits(body_timeout_s=deadline_s))) as url:
        tricklers = []
        for i in range(1100):  # from five loopback addresses: 220 each, under the 256 per address
            sock = socket.create_connection(address(url), timeout=5, source_address=(f"127.0.0.{2 + i % 5}", 0))
            sock.sendall(head)
            tricklers.append(sock)
        started = time.monotonic()
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/healthz").status_code == 200
            got = client.post("/v1/select", json={"query": "a dull film", "k": 2})
        answered_s = time.monotonic() - started
        assert got.status_code == 200 and len(got.json()["results"][0]) == 2, got.text
        assert all(_poll(sock) is None for sock in tricklers)  # answered while all 1,100 were held
        assert answered_s < deadline_s, answered_s
        cut: dict[int, bytes] = {}
        while len(cut) < len(tricklers) and time.monotonic() - started < deadline_s + 10:
            time.sleep(1.0)
            for n, sock in enumerate(tricklers):
                if n not in cut and (reply := _poll(sock, b" ")) is not None:  # a byte a second
                    cut[n] = reply
        held_s = time.monotonic() - started
        for sock in tricklers:
            sock.close()
    assert len(cut) == 1100, f"{1100 - len(cut)} trickling sockets still open after {held_s:.1f} s"
    answered = [reply for reply in cut.values() if reply]
    assert answered and all(b" 408 " in reply.split(b"\r\n")[0] + b" " for reply in answered)


def test_connections_per_client_address_are_capped_and_an_idle_one_makes_room(selector: llmr.Selector) -> None:
    head = b"POST /v1/select HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"
    with background_server(create_app(selector, Limits(max_connections_per_client=20))) as url:
        busy = [socket.create_connection(address(url), source_address=("127.0.0.7", 0)) for _ in range(20)]
        for sock in busy:
            sock.sendall(head)  # each is a request in progress: none can be closed to make room
        time.sleep(0.3)
        extra = socket.create_connection(address(url), timeout=5, source_address=("127.0.0.7", 0))
        assert extra.recv(1) == b""  # the 21st from that address is closed at once
        idle = [socket.create_connection(address(url), source_address=("127.0.0.8", 0)) for _ in range(20)]
        time.sleep(0.3)
        with httpx.Client(base_url=url, transport=httpx.HTTPTransport(local_address="127.0.0.8")) as client:
            assert client.get("/healthz").status_code == 200  # the oldest idle one was closed for it
        idle[0].settimeout(5)
        assert idle[0].recv(1) == b""
        assert httpx.get(f"{url}/healthz").status_code == 200  # other addresses are not affected
        for sock in [*busy, *idle, extra]:
            sock.close()


def test_a_trickled_head_on_a_kept_alive_connection_is_cut_off_and_heads_are_bounded(
    selector: llmr.Selector,
) -> None:
    """uvicorn stops its keep-alive timer at the first byte of the next head: a head trickled a byte at a
    time held the connection for as long as the client liked."""
    slow_heads = create_app(selector, Limits(head_timeout_s=1.0))
    with background_server(slow_heads) as url, socket.create_connection(address(url), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        assert b" 200 " in sock.recv(4096)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nx-slow: ")
        start, closed = time.monotonic(), False
        while time.monotonic() - start < 4 and not closed:  # a byte every 0.1 s, never the end of the head
            closed = _poll(sock, b"a") == b""
            time.sleep(0.1)
        assert closed and time.monotonic() - start < 2.5
    big_heads = create_app(selector, Limits(max_head_bytes=4096))  # heads may take 10 s, but not 8 kB
    with background_server(big_heads) as url, socket.create_connection(address(url), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 8192)  # no end of head
        reply = b""
        while chunk := sock.recv(4096):  # until the server closes it (a timeout here fails the test)
            reply += chunk
        assert b" 200 " not in reply


# -- every response bounded ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_service() -> Iterator[str]:
    """Passages of ~3,000 characters: at the worst settings (4 queries x k 8) a selection is ~100 kB and a
    prompt response, which repeats every example, ~200 kB; the cap is 120 kB."""
    sel = llmr.Selector.load("all-minilm-l6-v2", pool(40, chars=3000))
    worst = {"max_k": 8, "max_queries": 4, "max_results": 32, "max_body_bytes": 20_000, "max_pool_size": 46}
    limits = Limits(**worst, max_response_bytes=120_000, max_passage_chars=4_000, allow_additions=True)
    with background_server(create_app(sel, limits, TOKEN)) as url:
        yield url


WORST = {"queries": ["a film"] * 4, "k": 8}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/healthz", None),
        ("GET", "/v1/info", None),
        ("GET", "/openapi.json", None),
        ("GET", "/docs", None),
        ("POST", "/v1/select", WORST),
        ("POST", "/v1/select", {**WORST, "diversity": 0.5, "balance_labels": True, "order": "best_last"}),
        ("POST", "/v1/prompt", WORST),  # 199 kB before: the estimate did not count the prompts
        ("POST", "/v1/passages", {"passages": [{"contents": "é" * 2_990, "task_name": "t" * 9}] * 3}),
        ("POST", "/v1/select", {"queries": [1] * 6_000}),  # 6,000 validation errors: ~0.5 MB
        ("POST", "/nope", None),
    ],
)
def test_every_endpoint_answers_within_the_response_cap_at_its_worst(
    long_service: str, method: str, path: str, body: dict | None
) -> None:
    got = httpx.request(method, f"{long_service}{path}", json=body, headers=AUTH, timeout=60)
    assert len(got.content) <= 120_000, (got.status_code, len(got.content))
    assert got.status_code < 500 or got.status_code == 507, got.text[:300]
    if got.status_code == 413:
        assert "over 120000 bytes" in got.text


def test_select_at_the_worst_settings_still_fits_and_prompts_are_refused_up_front(long_service: str) -> None:
    assert httpx.post(f"{long_service}/v1/select", json=WORST).status_code == 200  # ~100 kB
    prompt = httpx.post(f"{long_service}/v1/prompt", json=WORST)
    assert prompt.status_code == 413 and "ask for fewer" in prompt.text  # counted before it was built
    errors = httpx.post(f"{long_service}/v1/select", json={"queries": [1] * 6_000})  # 6,000 errors listed
    assert errors.status_code == 413 and "over 120000 bytes" in errors.text  # refused by Guard, as any response


def test_additions_past_the_pool_limit_get_507(selector: llmr.Selector) -> None:
    sel = llmr.Selector.load("all-minilm-l6-v2", pool(4))
    with background_server(create_app(sel, Limits(max_pool_size=6, allow_additions=True), TOKEN)) as url:
        two = {"passages": [{"contents": "x\ny"}, {"contents": "z\nw"}]}
        assert httpx.post(f"{url}/v1/passages", json=two, headers=AUTH).json()["pool_size"] == 6
        full = httpx.post(f"{url}/v1/passages", json={"passages": [{"contents": "v\nu"}]}, headers=AUTH)
        assert full.status_code == 507 and "pool is full: 6 passages at most" in full.text
        assert httpx.get(f"{url}/healthz").json()["pool_size"] == 6


# -- the additions journal -----------------------------------------------------------------------


SEPARATORS = ["line\u2028separator", "paragraph\u2029separator", "next\u0085line", "cr\rlf", "fs\x1cgs\x1d", "tab\v"]


def test_passages_with_unicode_line_separators_survive_a_restart_without_encoding(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`str.splitlines()` split the journal at U+2028 (and U+2029, U+0085, \\r, \\x1c...): the next start
    failed with `added.jsonl:1: not a passage`, and the whole --index-dir no longer loaded."""
    folder = tmp_path / "index"
    first = llmr.Selector.load("all-minilm-l6-v2", pool())
    first.save(folder)
    first.keep_additions(folder)
    for i, text in enumerate(SEPARATORS):
        first.add([{"id": f"u{i}", "query": text, "answer": "Positive", "task_name": "sst2"}])
    calls = _encoded(monkeypatch)
    again = llmr.Selector.load(folder)
    assert calls == [1]  # the dimension probe: the journal's vectors were kept
    assert [p.contents for p in again.passages[-len(SEPARATORS) :]] == [f"{t}\nPositive" for t in SEPARATORS]
    top = again.select(SEPARATORS[0] + "\nPositive", k=1)[0]
    assert top.passage.id == "u0" and top.score > 0.99


def test_a_full_disk_during_an_addition_loses_no_acknowledged_one(
    tmp_path, monkeypatch: pytest.MonkeyPatch, selector: llmr.Selector
) -> None:
    """A write cut short by a full disk left a torn line; the next addition (200) was glued to it, and a
    restart dropped both: 401 items, not 402. Now the failed one gets 507 and leaves nothing behind."""
    from llmr.cli.serve import open_selector

    folder, limits = tmp_path / "index", Limits(allow_additions=True)
    real_write, faults = os.write, []

    def full_disk(fd: int, data: bytes) -> int:  # writes half, then the disk is full
        if not faults:
            faults.append(fd)
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    def one(i: int) -> dict:
        return {"passages": [{"id": f"a{i}", "query": f"addition number {i}", "answer": "x", "task_name": "sst2"}]}

    with background_server(create_app(open_selector("all-minilm-l6-v2", pool(), folder), limits, TOKEN)) as url:
        assert httpx.post(f"{url}/v1/passages", json=one(0), headers=AUTH).status_code == 200
        monkeypatch.setattr(os, "write", full_disk)
        failed = httpx.post(f"{url}/v1/passages", json=one(1), headers=AUTH)
        assert failed.status_code == 507 and "No space left" in failed.text
        assert httpx.post(f"{url}/v1/passages", json=one(2), headers=AUTH).status_code == 200
        assert httpx.get(f"{url}/healthz").json()["pool_size"] == len(pool()) + 2
        monkeypatch.setattr(os, "write", real_write)
    # no clean shutdown matters: nothing is saved at exit, the journal is all there is (fsynced per request)
    calls = _encoded(monkeypatch)
    again = open_selector("all-minilm-l6-v2", None, folder)
    assert faults and {"a0", "a2"} <= {p.id for p in again.passages} and "a1" not in {p.id for p in again.passages}
    assert len(again) == len(pool()) + 2 and calls == [1]


def test_a_torn_tail_is_truncated_with_a_warning_and_the_next_record_starts_on_its_own_line(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    from llmr.serving.selector import JOURNAL, _read_journal

    folder = tmp_path / "index"
    first = llmr.Selector.load("all-minilm-l6-v2", pool(4))
    first.save(folder)
    first.keep_additions(folder)
    first.add([{"id": "w1", "contents": "one\nx"}])
    journal = folder / JOURNAL
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"passage": {"id": "w2", "conte')  # a kill mid-write
    with caplog.at_level(logging.WARNING):
        assert [p.id for p, _ in _read_journal(journal)] == ["w1"]
    assert journal.read_bytes() == whole and "dropped a torn last record" in caplog.text
    journal.write_bytes(whole + b'{"passage": {"id": "w2", "conte')  # a failed write that was not undone
    first.add([{"id": "w3", "contents": "three\nx"}])  # is dropped before the next append, not glued to it
    assert [p.id for p, _ in _read_journal(journal)] == ["w1", "w3"]
    journal.write_bytes(b"not json\n" + journal.read_bytes())
    with pytest.raises(ValueError, match=r"added.jsonl:1: not a journal record"):
        _read_journal(journal)


# -- load shedding (issue 35) ----------------------------------------------------------------------


def test_past_the_bound_work_is_shed_at_once_with_retry_after_and_admitted_again_after(
    selector: llmr.Selector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 128 clients the service queued without limit (p99 6.5 s). Now, with one request held in the
    selector and the bound at 1, the next work request gets 503 + Retry-After at once (not after the held
    one), on a connection kept open; /healthz still answers; once the held one is done, work is admitted."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    entered, release = threading.Event(), threading.Event()
    select_many = selector.select_many

    def held(*args: object, **kwargs: object) -> object:
        entered.set()
        release.wait(30)
        return select_many(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(selector, "select_many", held)
    one = {"query": "a dull film", "k": 1}
    with (
        background_server(create_app(selector, Limits(max_in_flight=1))) as url,
        ThreadPoolExecutor(1) as pool,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        first = pool.submit(httpx.post, f"{url}/v1/select", json=one, timeout=30)
        assert entered.wait(30)
        for path in ("/v1/select", "/v1/prompt", "/v1/passages"):
            started = time.monotonic()
            shed = client.post(path, json=one)
            assert time.monotonic() - started < 2 and not first.done()
            assert shed.status_code == 503 and shed.headers["retry-after"] == "1", (path, shed.text)
            assert shed.text.count("\n") == 0 and shed.json()["detail"].startswith("busy: 1 requests in flight")
            assert "close" not in shed.headers.get("connection", "")  # the body was read: no reconnect needed
        assert client.get("/healthz").status_code == 200
        release.set()
        assert first.result().status_code == 200
        assert client.post("/v1/select", json=one).status_code == 200  # admitted again


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "70000"], "Invalid value for '--port': Input should be less than or equal to 65535"),
        (["--port", "0"], "Invalid value for '--port'"),
        (["--max-k", "0"], "Invalid value for '--max-k': Input should be greater than or equal to 1"),
        (["--max-queries", "0"], "Invalid value for '--max-queries'"),
        (["--max-pool-size", "-5"], "Invalid value for '--max-pool-size'"),
        (["--query-max-length", "2"], "Invalid value for '--query-max-length'"),
        (["--max-concurrent-requests", "0"], "Invalid value for '--max-concurrent-requests': Input should be grea"),
        (["--max-concurrent-requests", "many"], "Invalid value for '--max-concurrent-requests'"),
        (["--log-level", "loud"], "Invalid value for --log-level: expected debug, info, warning or error"),
    ],
)
def test_serve_refuses_out_of_range_options_in_one_line(
    args: list[str], says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from llmr.cli import main

    monkeypatch.setattr(sys, "argv", ["llmr", "serve", "--pool", "no/such/pool.jsonl", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("llmr: error: ") and err.count("\n") == 1 and says in err, err


def test_serve_logs_one_line_per_request_at_its_default_level(
    selector: llmr.Selector, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    """`llmr serve` (--log-level info by default) logged no request: `llmr`'s own logging set-up ran first,
    so the command's `basicConfig(level=INFO)` did nothing. The whole CLI path runs here, with the app
    served in-process instead of on a port; --max-concurrent-requests reaches the app's limits."""
    from types import SimpleNamespace

    from starlette.testclient import TestClient

    from llmr.cli import main, serve
    from llmr.serving import service

    def run(app: Any, host: str, port: int) -> SimpleNamespace:
        assert app.state.limits.max_in_flight == 7

        def requests() -> None:
            with TestClient(app) as client:  # type: ignore[arg-type]
                client.get("/healthz")
                client.post("/v1/select", json={"query": "a dull film", "k": 1})

        return SimpleNamespace(run=requests)

    monkeypatch.setattr(serve, "open_selector", lambda *args: selector)
    monkeypatch.setattr(service, "server", run)
    monkeypatch.setattr(serve, "_raise_open_files_limit", lambda: None)
    (tmp_path / "unused.jsonl").touch()
    argv = ["llmr", "serve", "--pool", str(tmp_path / "unused.jsonl"), "--max-concurrent-requests", "7"]
    monkeypatch.setattr(sys, "argv", argv)
    logger = logging.getLogger("llmr.serve")
    before = (logger.level, list(logger.handlers), logger.propagate)
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        logger.setLevel(before[0])
        logger.handlers[:], logger.propagate = before[1], before[2]
    lines = [line for line in capsys.readouterr().err.splitlines() if " llmr.serve " in line]
    assert exited.value.code == 0
    assert len(lines) == 2 and lines[0].endswith(" ms") and "GET /healthz 200" in lines[0], lines
    assert "POST /v1/select 200" in lines[1]


def test_docs_work_offline(selector: llmr.Selector) -> None:
    """FastAPI's /docs loads Swagger UI from a CDN: blank without the internet. Now it is a page of its own,
    with no scripts, listing each endpoint and linking the schema."""
    with background_server(create_app(selector)) as url:
        page = httpx.get(f"{url}/docs")
        schema = httpx.get(f"{url}/openapi.json").json()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script" not in page.text and "cdn" not in page.text and "http" not in page.text
    assert 'href="/openapi.json"' in page.text and "POST /v1/select" in page.text and "/v1/select" in schema["paths"]


@pytest.mark.slow
def test_kill_9_right_after_a_200_loses_no_addition_and_requests_are_logged(tmp_path) -> None:
    """The real `llmr serve`, killed with SIGKILL right after answering an addition: the restart (no --pool)
    has it. Its stderr has an access line for the request, at the default log level."""
    import json
    import signal
    import subprocess

    passages = tmp_path / "passages.jsonl"
    rows = [{"id": p["id"], "contents": f"{p['query']}\n{p['answer']}", "task_name": "sst2"} for p in pool()]
    passages.write_text("".join(json.dumps(row) + "\n" for row in rows))
    folder, log_file = tmp_path / "index", tmp_path / "serve.log"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"

    def start(*args: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "llmr.cli", "serve", "--index-dir", str(folder), "--port", str(port), *args]
        proc = subprocess.Popen(cmd, env={**os.environ, "LLMR_TOKEN": TOKEN}, stderr=log_file.open("a"))
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    return proc
            except httpx.HTTPError:
                time.sleep(0.5)
        proc.kill()
        raise AssertionError(f"llmr serve did not start: {log_file.read_text()[-2000:]}")

    first = start("--pool", str(passages), "--allow-additions")
    try:
        one = {"passages": [{"id": "k1", "query": "The senate passed the budget bill", "answer": "World"}]}
        assert httpx.post(f"{url}/v1/passages", json=one, headers=AUTH).status_code == 200
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert "POST /v1/passages 200" in log_file.read_text()  # logged at the default --log-level info
    again = start()
    try:
        assert httpx.get(f"{url}/healthz").json()["pool_size"] == len(pool()) + 1
        got = httpx.post(f"{url}/v1/select", json={"query": "the senate passed the budget", "k": 1}).json()
        assert got["results"][0][0]["id"] == "k1"
    finally:
        again.terminate()
        again.wait(timeout=30)
