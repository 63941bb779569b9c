"""The OpenAI-compatible backend against real local servers (loopback only).

Small `http.server` servers stand in for misbehaving ones (slow, no log-probs, failing then
recovering); a real llama-cpp-python server checks the scores against the in-process backend.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")

from llmr.llm import load_llm
from llmr.llm.base import Score
from llmr.llm.openai_compat import (
    LLMServerError,
    LLMServerTimeout,
    OpenAICompatLLM,
    score_echoed_prompt,
)

# --- fake servers --------------------------------------------------------------------------------


def char_logprob(ch: str) -> float:
    return -0.5 - (ord(ch) % 7) / 4


def char_level_completion(body: dict[str, Any]) -> dict[str, Any]:
    """An echo+logprobs answer from a pretend model whose tokens are single characters."""
    prompt = body["prompt"]
    generated = "x" * max(int(body.get("max_tokens") or 0), 0)
    text = prompt + generated
    logprobs = {
        "tokens": list(text),
        "text_offset": list(range(len(text))),
        "token_logprobs": [None] + [char_logprob(c) for c in text[1:]],
        "top_logprobs": None,
    }
    choice = {"text": text if body.get("echo") else generated, "index": 0, "finish_reason": "length"}
    choice["logprobs"] = logprobs if body.get("logprobs") is not None and body.get("echo") else None
    return {"id": "cmpl-1", "object": "text_completion", "model": body.get("model"), "choices": [choice]}


def expected_char_score(context: str, continuation: str) -> Score:
    return Score(sum(char_logprob(c) for c in continuation), len(continuation))


class FakeServer:
    """A threaded HTTP server on 127.0.0.1 whose /v1/completions answer comes from `respond(n, body)`.

    `respond` returns (status, json body, extra headers); n counts the requests, from 1.
    """

    def __init__(self, respond: Callable[[int, dict[str, Any]], tuple[int, Any, dict[str, str]]]) -> None:
        self.requests: list[dict[str, Any]] = []
        self.stop = threading.Event()
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with lock:
                    outer.requests.append(body)
                    n = len(outer.requests)
                status, payload, headers = respond(n, body)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def ok(n: int, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
    return 200, char_level_completion(body), {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the log-prob extraction ---------------------------------------------------------------------


def test_extraction_from_a_llama_cpp_python_answer() -> None:
    # Shape of llama-cpp-python's echo: BOS dropped, offsets count from the prompt's first character,
    # the first token's log-prob is null, one generated token follows the prompt.
    prompt = "The capital of France is Paris"
    logprobs = {
        "tokens": ["The", " capital", " of", " France", " is", " Paris", "."],
        "text_offset": [0, 3, 11, 14, 21, 24, 30],
        "token_logprobs": [None, -5.0, -1.0, -2.0, -1.5, -0.7, -3.0],
    }
    assert score_echoed_prompt(logprobs, prompt, len("The capital of France is")) == Score(-0.7, 1)
    assert score_echoed_prompt(logprobs, prompt, len("The capital of")) == Score(-2.0 - 1.5 - 0.7, 3)


def test_extraction_from_a_vllm_answer_with_bos() -> None:
    # vLLM adds up token-string lengths, the decoded "<bos>" included: every offset is shifted by 5.
    prompt = "The capital of France is Paris"
    logprobs = {
        "tokens": ["<bos>", "The", " capital", " of", " France", " is", " Paris", " and"],
        "text_offset": [0, 5, 8, 16, 19, 26, 29, 35],
        "token_logprobs": [None, -9.0, -5.0, -1.0, -2.0, -1.5, -0.7, -3.0],
    }
    assert score_echoed_prompt(logprobs, prompt, len("The capital of France is")) == Score(-0.7, 1)


def test_extraction_counts_a_token_straddling_the_boundary() -> None:
    prompt = "Pari" + "s is big"
    logprobs = {"tokens": ["Paris", " is", " big"], "text_offset": [0, 5, 8], "token_logprobs": [None, -1.0, -2.0]}
    assert score_echoed_prompt(logprobs, prompt, 5) == Score(-3.0, 2)
    with pytest.raises(LLMServerError, match="first token of a prompt has no log-prob"):
        score_echoed_prompt(logprobs, prompt, 4)  # "Paris" holds continuation text but has no log-prob


@pytest.mark.parametrize("logprobs", [None, {}, {"tokens": ["a"], "text_offset": [0], "token_logprobs": None}])
def test_extraction_without_prompt_logprobs_is_a_clear_error(logprobs: Any) -> None:
    with pytest.raises(LLMServerError, match=r"must support echo\+logprobs"):
        score_echoed_prompt(logprobs, "ab", 1)


# --- against fake servers ------------------------------------------------------------------------


def test_scores_and_generation_through_a_server() -> None:
    contexts = [f"context {i}: " for i in range(12)]
    continuations = [f"answer {i * 7}" for i in range(12)]
    with FakeServer(ok) as server:
        llm = OpenAICompatLLM("fake-model", base_url=server.base_url, concurrency=4)
        scores = llm.score(contexts, continuations)
        assert scores == [expected_char_score(c, a) for c, a in zip(contexts, continuations, strict=True)]
        body = server.requests[0]
        assert body["echo"] is True and body["logprobs"] == 1 and body["model"] == "fake-model"
        assert llm.generate(["hello"], max_new_tokens=3) == ["xxx"]
        assert server.requests[-1]["stop"] == ["\n"] and server.requests[-1]["temperature"] == 0
    assert llm.fingerprint == f"openai:{server.base_url}:fake-model"
    with pytest.raises(ValueError, match="empty"):
        llm.score(["a"], [""])
    with pytest.raises(ValueError, match="2 contexts but 1"):
        llm.score(["a", "b"], ["c"])
    assert llm.score([], []) == []


def test_base_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeServer(ok) as server:
        monkeypatch.setenv("LLMR_OPENAI_BASE_URL", server.base_url + "/")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        llm = load_llm("m", backend="openai")
        assert llm.base_url == server.base_url
        assert llm._client.headers["authorization"] == "Bearer sk-test"
        assert llm.score(["a"], ["bc"]) == [expected_char_score("a", "bc")]


def test_5xx_and_429_are_retried_until_success() -> None:
    def flaky(n: int, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if n == 1:
            return 503, {"error": "warming up"}, {}
        if n == 2:
            return 429, {"error": "slow down"}, {"Retry-After": "0.05"}
        if n == 3:
            return 500, {"error": "oops"}, {}
        return ok(n, body)

    with FakeServer(flaky) as server:
        llm = OpenAICompatLLM("m", base_url=server.base_url, max_retries=3, backoff=0.01)
        assert llm.score(["ctx "], ["ans"]) == [expected_char_score("ctx ", "ans")]
        assert len(server.requests) == 4


def test_retries_give_up_with_a_clear_error() -> None:
    def down(n: int, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        return 502, {"error": "bad gateway"}, {}

    with FakeServer(down) as server:
        llm = OpenAICompatLLM("m", base_url=server.base_url, max_retries=2, backoff=0.01)
        with pytest.raises(LLMServerError, match="failed after 3 attempts; last error: HTTP 502"):
            llm.score(["a"], ["b"])
        assert len(server.requests) == 3


def test_client_errors_are_not_retried() -> None:
    def bad(n: int, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        return 400, {"error": {"message": "prompt too long"}}, {}

    with FakeServer(bad) as server:
        llm = OpenAICompatLLM("m", base_url=server.base_url, max_retries=3, backoff=0.01)
        with pytest.raises(LLMServerError, match=r"HTTP 400.*prompt too long") as err:
            llm.generate(["a"])
        assert err.value.status == 400 and len(server.requests) == 1


def test_nothing_listening_fails_after_max_retries_in_bounded_time() -> None:
    port = free_port()  # bound then released: nothing listens there now
    llm = OpenAICompatLLM("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=3, backoff=0.05, timeout=2)
    start = time.monotonic()
    with pytest.raises(LLMServerError, match=r"failed after 4 attempts; last error: ConnectError"):
        llm.score(["a"], ["b"])
    elapsed = time.monotonic() - start
    assert 0.05 + 0.1 + 0.2 <= elapsed < 5  # three backoffs, then the error


def test_many_requests_to_a_dead_server_fail_fast() -> None:
    port = free_port()
    llm = OpenAICompatLLM("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=2, backoff=0.1, concurrency=2)
    start = time.monotonic()
    with pytest.raises(LLMServerError, match="failed after 3 attempts"):
        llm.score(["a"] * 40, ["b"] * 40)
    assert time.monotonic() - start < 2.5  # the queued requests are cancelled, not tried one by one (~6 s)


def test_a_slow_server_gives_a_clear_timeout_error() -> None:
    holder: dict[str, FakeServer] = {}

    def slow(n: int, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        holder["server"].stop.wait(5)  # longer than the client's timeout; cut short at teardown
        return ok(n, body)

    with FakeServer(slow) as server:
        holder["server"] = server
        llm = OpenAICompatLLM("m", base_url=server.base_url, timeout=0.3, max_retries=3)
        start = time.monotonic()
        with pytest.raises(LLMServerTimeout, match=r"no answer from .* within 0.3 s"):
            llm.score(["a"], ["b"])
        assert time.monotonic() - start < 2
        assert len(server.requests) == 1  # a timeout is not retried


def test_a_server_without_prompt_logprobs_is_a_clear_error() -> None:
    def no_logprobs(n: int, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        answer = {"choices": [{"text": " Paris", "index": 0, "logprobs": None, "finish_reason": "length"}]}
        return 200, answer, {}

    with FakeServer(no_logprobs) as server:
        llm = OpenAICompatLLM("m", base_url=server.base_url)
        with pytest.raises(LLMServerError, match=r"must support echo\+logprobs on /v1/completions"):
            llm.score(["The capital of France is"], [" Paris"])
        assert llm.generate(["The capital of France is"]) == [" Paris"]  # generation still works


def test_max_tokens_zero_falls_back_to_one_when_refused() -> None:
    def strict(n: int, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        if body["max_tokens"] < 1:
            return 400, {"error": "max_tokens must be at least 1"}, {}
        return ok(n, body)

    with FakeServer(strict) as server:
        llm = OpenAICompatLLM("m", base_url=server.base_url, score_max_tokens=0, concurrency=1)
        assert llm.score(["ab", "cd"], ["c", "e"]) == [expected_char_score("ab", "c"), expected_char_score("cd", "e")]
        assert [r["max_tokens"] for r in server.requests] == [0, 1, 1]


# --- against a real llama-cpp-python server ------------------------------------------------------

# Short prompts: llama-cpp-python's server spends ~0.3 s per echoed token (it sorts the 262k-word
# vocabulary in Python for each one).
PAIRS = [
    ("The capital of France is", " Paris"),
    ("The capital of France is", " Berlin"),
    ("Q: What colour is the sky on a clear day?\nA:", " Blue."),
    ("Q: What colour is the sky on a clear day?\nA:", " Green."),
    ("Water freezes at zero degrees", " Celsius"),
    ("Water freezes at zero degrees", " Kelvin"),
    ("def add(a, b):\n    return", " a + b"),
]


@pytest.fixture(scope="module")
def llama_server() -> Iterator[tuple[str, str]]:
    pytest.importorskip("llama_cpp")
    pytest.importorskip("uvicorn")
    from llmr.llm.models import EMBEDDED

    gguf = EMBEDDED["gemma-3-270m"].gguf_path()
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--n_ctx", "2048", "--n_threads", str(os.cpu_count() or 1)]
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"llmr-llama-server-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        import httpx

        deadline = time.monotonic() + 120
        model_id = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                resp = httpx.get(f"{base_url}/models", timeout=2)
                if resp.status_code == 200:
                    model_id = resp.json()["data"][0]["id"]
                    break
            time.sleep(0.25)
        if model_id is None:
            pytest.fail(f"llama_cpp.server did not answer within 120 s: {log.read_text()[-2000:]}")
        yield base_url, model_id
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.mark.slow  # ~35 s: the server's echo costs ~0.3 s per prompt token
def test_real_server_agrees_with_the_llama_cpp_backend(llama_server: tuple[str, str]) -> None:
    base_url, model_id = llama_server
    server = OpenAICompatLLM(model_id, base_url=base_url, concurrency=2, timeout=60)
    local = load_llm("gemma-3-270m", backend="llamacpp")
    contexts, continuations = [c for c, _ in PAIRS], [a for _, a in PAIRS]
    remote, here = server.score(contexts, continuations), local.score(contexts, continuations)
    diffs = []
    for r, h in zip(remote, here, strict=True):
        assert r.n_tokens == h.n_tokens  # the same tokens: no boundary merges in these pairs
        diffs.append(abs(r.logprob - h.logprob) / h.n_tokens)
    assert sum(diffs) / len(diffs) < 0.1 and max(diffs) < 0.5
    for i in range(0, len(PAIRS) - 1, 2):  # the right answer before the wrong one
        assert remote[i].logprob > remote[i + 1].logprob
    again = server.score(contexts[:2], continuations[:2])
    for a, r in zip(again, remote[:2], strict=True):
        assert a.logprob == pytest.approx(r.logprob, abs=0.5)


def test_real_server_generates_greedily_and_stops(llama_server: tuple[str, str]) -> None:
    base_url, model_id = llama_server
    llm = OpenAICompatLLM(model_id, base_url=base_url, timeout=60)
    prompts = ["Q: What is the capital of France?\nA: Paris\n\nQ: What is the capital of Italy?\nA:", "1, 2, 3, 4,"]
    out = llm.generate(prompts, max_new_tokens=12)
    assert "Rome" in out[0] and "\n" not in out[0]
    assert out[1].startswith(" 5")
    assert llm.generate(prompts, max_new_tokens=12) == out
