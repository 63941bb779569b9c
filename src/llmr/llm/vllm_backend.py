"""vLLM offline engine (GPU): scoring through `prompt_logprobs`, greedy generation.

Prompts go in as token ids built exactly as the transformers backend builds them (continuation
tokenized on its own and appended, BOS only where the tokenizer adds one, context cut from the
left), so the two backends score the same token sequences. The mapping between llmr's pairs and
vLLM's requests/outputs is in small pure functions (`build_token_prompts`,
`score_prompt_logprobs`) that are tested without vLLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmr.llm.base import LLM, Score, bos_prefix, cut_at_stop
from llmr.llm.models import DEFAULT_LLM, model_fingerprint, resolve_hf_model


def build_token_prompts(
    context_ids: Sequence[Sequence[int]],
    continuation_ids: Sequence[Sequence[int]],
    prefix: Sequence[int],
    max_length: int,
) -> list[list[int]]:
    """prefix + context + continuation for each pair; the context loses its start to fit `max_length`.

    Raises ValueError for a length mismatch, an empty continuation, or one that cannot fit.
    """
    if len(context_ids) != len(continuation_ids):
        raise ValueError(f"{len(context_ids)} contexts but {len(continuation_ids)} continuations")
    out = []
    for i, (ctx, cont) in enumerate(zip(context_ids, continuation_ids, strict=True)):
        if not cont:
            raise ValueError(f"continuation {i} is empty: nothing to score")
        room = max_length - len(prefix) - len(cont)
        if room < 1:
            raise ValueError(f"continuation {i} has {len(cont)} tokens, more than max_length {max_length} allows")
        if not prefix and not ctx:
            raise ValueError(f"context {i} is empty and the model has no BOS: nothing to condition on")
        out.append([*prefix, *list(ctx)[-room:], *cont])
    return out


def score_prompt_logprobs(
    prompt_token_ids: Sequence[int], prompt_logprobs: Sequence[Any], n_continuation: int
) -> Score:
    """Sum the log-probs of the last `n_continuation` prompt tokens from a vLLM `RequestOutput`.

    `prompt_logprobs[i]` is None for i = 0, else a dict token id -> object with `.logprob` that
    holds at least the prompt's own token `prompt_token_ids[i]` (plus the top-k when k > 0).
    """
    n = len(prompt_token_ids)
    if prompt_logprobs is None or len(prompt_logprobs) != n:
        raise ValueError(
            f"expected prompt_logprobs for each of the {n} prompt tokens, got "
            f"{'none' if prompt_logprobs is None else len(prompt_logprobs)}: request them with prompt_logprobs=0"
        )
    if not 0 < n_continuation < n:
        raise ValueError(f"cannot score {n_continuation} continuation tokens of a {n}-token prompt")
    total = 0.0
    for i in range(n - n_continuation, n):
        entry = prompt_logprobs[i]
        token = prompt_token_ids[i]
        if entry is None or token not in entry:
            raise ValueError(f"no log-prob for prompt token {i} (id {token})")
        value = entry[token]
        total += float(value.logprob if hasattr(value, "logprob") else value)
    return Score(total, n_continuation)


def score_request_outputs(outputs: Sequence[Any], n_continuations: Sequence[int]) -> list[Score]:
    """Scores from vLLM's `generate` outputs (in request order), each with `.prompt_token_ids`, `.prompt_logprobs`."""
    if len(outputs) != len(n_continuations):
        raise ValueError(f"{len(outputs)} outputs for {len(n_continuations)} requests")
    return [
        score_prompt_logprobs(out.prompt_token_ids, out.prompt_logprobs, n)
        for out, n in zip(outputs, n_continuations, strict=True)
    ]


class VLLMLLM(LLM):
    def __init__(
        self,
        model: str = DEFAULT_LLM,
        *,
        dtype: str = "auto",
        max_length: int = 2048,
        gpu_memory_utilization: float = 0.85,
        seed: int = 0,
        **engine_options: Any,
    ) -> None:
        try:
            from vllm import LLM as Engine
            from vllm import SamplingParams
        except ImportError as exc:
            raise ImportError("the vLLM backend needs vLLM and a GPU: pip install 'llmr[gpu]'") from exc
        self._sampling_params = SamplingParams
        path, self.model_id = resolve_hf_model(model)  # embedded GGUFs become a safetensors folder
        self.max_length = max_length
        self.engine = Engine(
            model=path,
            dtype=dtype,
            max_model_len=max_length,
            gpu_memory_utilization=gpu_memory_utilization,
            seed=seed,
            **engine_options,
        )
        self.tokenizer = self.engine.get_tokenizer()
        self._prefix = bos_prefix(self.tokenizer)
        try:
            self.dtype = str(self.engine.llm_engine.model_config.dtype).removeprefix("torch.")
        except AttributeError:  # engine internals differ across vLLM versions
            self.dtype = dtype
        self.fingerprint = f"vllm:{self.model_id}:{model_fingerprint(path)}:{self.dtype}"

    def _encode(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), add_special_tokens=False)["input_ids"] if texts else []

    def score(self, contexts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
        if len(contexts) != len(continuations):
            raise ValueError(f"{len(contexts)} contexts but {len(continuations)} continuations")
        if not contexts:
            return []
        cont_ids = self._encode(continuations)
        prompts = build_token_prompts(self._encode(contexts), cont_ids, self._prefix, self.max_length)
        params = self._sampling_params(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        outputs = self.engine.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return score_request_outputs(outputs, [len(c) for c in cont_ids])

    def generate(self, prompts: Sequence[str], max_new_tokens: int = 64, stop: str | None = "\n") -> list[str]:
        if not prompts:
            return []
        room = max(1, self.max_length - max_new_tokens - len(self._prefix))
        token_prompts = [{"prompt_token_ids": self._prefix + ids[-room:]} for ids in self._encode(prompts)]
        params = self._sampling_params(
            max_tokens=max_new_tokens, temperature=0.0, stop=[stop] if stop else None, skip_special_tokens=True
        )
        outputs = self.engine.generate(token_prompts, params, use_tqdm=False)
        return [cut_at_stop(out.outputs[0].text, stop) for out in outputs]
