"""Any OpenAI-compatible `/v1/completions` server (vLLM, llama-cpp-python's server, hosted APIs).

Scoring asks the server to echo the prompt with the log-prob of each of its tokens
(`echo=true, logprobs=1`) and sums the tokens that hold continuation characters, found by their
character offsets (`logprobs.text_offset`). The server tokenizes context + continuation as one text,
so a token that straddles the boundary (rare: contexts end in a space, newline or colon) is counted
with the continuation; the local backends tokenize the two parts separately.

Limits of a text-only API, compared with the local backends:
- the server does the tokenizing, so contexts are not cut to fit: a prompt longer than the server's
  context window comes back as the server's error;
- `max_tokens=0` means "no limit" to llama-cpp-python's server, so scoring asks for one generated
  token (`score_max_tokens=1`) and ignores it; vLLM and OpenAI accept 0, which saves that token;
- llama-cpp-python's server (0.3.36) shifts the echoed log-probs by one token for models without a
  BOS token (SmolLM2: " Paris" after "The capital of France is" comes back as -8.45 instead of
  -0.26): use it with BOS models (Gemma) only.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from llmr.llm.base import LLM, Score, cut_at_stop

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
_MAX_DELAY = 30.0


class LLMServerError(RuntimeError):
    """The server failed, refused the request, or cannot do what llmr needs."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of a refusal, if any


class LLMServerTimeout(LLMServerError, TimeoutError):
    """The server did not answer within `timeout` seconds."""


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the OpenAI-compatible backend needs httpx: pip install 'llmr[serve]' (or pip install httpx)"
        ) from exc
    return httpx


_NO_PROMPT_LOGPROBS = (
    "the server returned no log-probs for the prompt: to score, the server must support echo+logprobs on "
    "/v1/completions (echo=true with logprobs=1 returning prompt token log-probs; vLLM and llama-cpp-python's "
    "server do, llama.cpp's llama-server and chat-only APIs do not)"
)


def score_echoed_prompt(logprobs: Any, prompt: str, context_chars: int) -> Score:
    """Sum the echoed log-probs of the tokens of `prompt` that hold characters at or after `context_chars`.

    `logprobs` is a choice's `logprobs` object: parallel lists `tokens`, `text_offset` and
    `token_logprobs` covering the echoed prompt (and any generated tokens after it, ignored).
    A token counts when it ends after the context, i.e. holds at least one continuation character.
    """
    if not isinstance(logprobs, dict):
        raise LLMServerError(_NO_PROMPT_LOGPROBS)
    offsets, values = logprobs.get("text_offset"), logprobs.get("token_logprobs")
    tokens = logprobs.get("tokens")
    if not offsets or values is None or len(values) != len(offsets):
        raise LLMServerError(_NO_PROMPT_LOGPROBS)
    shift = _offset_shift(tokens, offsets, prompt)
    starts = [o - shift for o in offsets]
    total, n = 0.0, 0
    for i, start in enumerate(starts):
        if start >= len(prompt):
            break  # generated tokens, not part of the prompt
        if i + 1 < len(starts):
            end = starts[i + 1]
        elif tokens is not None and i < len(tokens) and tokens[i] is not None:
            end = start + len(tokens[i])
        else:
            end = len(prompt)
        # Zero-width tokens (partial UTF-8 bytes) belong where they start.
        if max(end, start + 1) <= context_chars:
            continue
        value = values[i]
        if value is None:
            raise LLMServerError(
                f"the server gave no log-prob for prompt token {i}, which holds continuation text: "
                "the first token of a prompt has no log-prob, so give a non-empty context"
            )
        total += float(value)
        n += 1
    if n == 0:
        raise LLMServerError("the echoed prompt has no token at the continuation's characters: check the server")
    return Score(total, n)


def _offset_shift(tokens: Sequence[str | None] | None, offsets: Sequence[int], prompt: str) -> int:
    """Where the prompt starts in the offsets' coordinates.

    Servers differ: llama-cpp-python and OpenAI count from the prompt's first character, vLLM adds
    up the lengths of the token strings, a leading "<bos>" included (offsets shifted by 5).
    """
    if not tokens or not prompt:
        return 0
    joined = "".join(t or "" for t in tokens)
    at = joined.find(prompt)
    if at > 0 and at in offsets:
        return at
    return 0


class OpenAICompatLLM(LLM):
    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        concurrency: int = 4,
        score_max_tokens: int = 1,
    ) -> None:
        httpx = _import_httpx()
        self.model = model
        self.base_url = (base_url or os.environ.get("LLMR_OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        if max_retries < 0 or concurrency < 1 or timeout <= 0:
            raise ValueError("need max_retries >= 0, concurrency >= 1 and timeout > 0")
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = backoff
        self.concurrency = concurrency
        self.score_max_tokens = score_max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._httpx = httpx
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=self.timeout,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        self.fingerprint = f"openai:{self.base_url}:{model}"

    def close(self) -> None:
        self._client.close()

    # --- HTTP ---------------------------------------------------------------------------------
    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST with retries (exponential backoff) on connection errors, 429 and 5xx."""
        httpx = self._httpx
        url = f"{self.base_url}{path}"
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                resp = self._client.post(path, json=payload)
            except httpx.TimeoutException as exc:
                # Not retried: a request that took longer than `timeout` once is likely to again.
                raise LLMServerTimeout(
                    f"no answer from {url} within {self.timeout:g} s ({type(exc).__name__}); "
                    "raise `timeout` or send smaller requests"
                ) from exc
            except httpx.TransportError as exc:  # refused, reset, DNS, ...
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 400:
                    try:
                        return resp.json()
                    except ValueError as exc:
                        raise LLMServerError(
                            f"{url} answered with something that is not JSON: {resp.text[:200]!r}"
                        ) from exc
                if resp.status_code not in _RETRY_STATUS:
                    raise LLMServerError(
                        f"{url} refused the request: HTTP {resp.status_code}: {resp.text[:500]}", resp.status_code
                    )
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                retry_after = _retry_after(resp.headers.get("retry-after"))
            if attempt < self.max_retries:
                delay = retry_after if retry_after is not None else self.backoff * 2**attempt
                delay = min(delay, _MAX_DELAY) * (1 + 0.1 * random.random())
                log.warning("%s failed (%s); retry %d/%d in %.1f s", url, last, attempt + 1, self.max_retries, delay)
                time.sleep(delay)
        raise LLMServerError(f"{url} failed after {self.max_retries + 1} attempts; last error: {last}")

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        if self.concurrency == 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items))) as pool:
            futures = [pool.submit(fn, x) for x in items]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:  # fail fast: do not wait for the queued requests to fail one by one
                    f.cancel()
                raise

    # --- LLM interface ------------------------------------------------------------------------
    def _score_one(self, pair: tuple[str, str]) -> Score:
        context, continuation = pair
        prompt = context + continuation
        payload = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": self.score_max_tokens,
            "temperature": 0,
            "echo": True,
            "logprobs": 1,
        }
        try:
            data = self._post("/completions", payload)
        except LLMServerError as exc:
            if self.score_max_tokens != 0 or exc.status not in (400, 422):
                raise
            log.warning("the server refused max_tokens=0 for scoring; using 1 from now on")
            self.score_max_tokens = 1
            data = self._post("/completions", {**payload, "max_tokens": 1})
        try:
            choice = data["choices"][0]
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMServerError(f"unexpected answer from the server: {str(data)[:300]}") from exc
        return score_echoed_prompt(choice.get("logprobs"), prompt, len(context))

    def score(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        if len(contexts) != len(continuations):
            raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
        for i, cont in enumerate(continuations):
            if not cont:
                raise ValueError(f"continuation {i} is empty: nothing to score")
        return self._map(self._score_one, list(zip(contexts, continuations, strict=True)))

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: str | None = "\n") -> list[str]:
        def one(prompt: str) -> str:
            payload: dict[str, Any] = {
                "model": self.model,
                "prompt": prompt,
                "max_tokens": max_new_tokens,
                "temperature": 0,
            }
            if stop:
                payload["stop"] = [stop]
            data = self._post("/completions", payload)
            try:
                text = data["choices"][0]["text"]
            except (KeyError, IndexError, TypeError) as exc:
                raise LLMServerError(f"unexpected answer from the server: {str(data)[:300]}") from exc
            return cut_at_stop(text or "", stop)

        return self._map(one, list(prompts))


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
