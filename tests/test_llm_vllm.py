"""The vLLM backend: its request/response mapping without vLLM, and the engine itself where a GPU is."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from llmr.llm.base import Score
from llmr.llm.vllm_backend import build_token_prompts, score_prompt_logprobs, score_request_outputs


@dataclass
class Logprob:
    """The shape of `vllm.sequence.Logprob`."""

    logprob: float
    rank: int | None = None
    decoded_token: str | None = None


def request_output(prompt_token_ids: list[int], logprobs: list[float], extra_top: bool = False) -> SimpleNamespace:
    """A `vllm.RequestOutput`-shaped object: prompt_logprobs[0] is None, then token id -> Logprob."""
    entries: list[dict[int, Logprob] | None] = [None]
    for token, lp in zip(prompt_token_ids[1:], logprobs, strict=True):
        entry = {token: Logprob(lp, rank=2)}
        if extra_top:  # with prompt_logprobs=k > 0 the top-k come along; only the prompt's own token counts
            entry[999] = Logprob(-0.01, rank=1)
        entries.append(entry)
    return SimpleNamespace(prompt_token_ids=prompt_token_ids, prompt_logprobs=entries, outputs=[])


def test_build_token_prompts_appends_and_cuts_the_context_from_the_left() -> None:
    prompts = build_token_prompts([[10, 11, 12], [20]], [[7], [8, 9]], prefix=[2], max_length=16)
    assert prompts == [[2, 10, 11, 12, 7], [2, 20, 8, 9]]
    (cut,) = build_token_prompts([list(range(100, 110))], [[7, 8]], prefix=[2], max_length=6)
    assert cut == [2, 107, 108, 109, 7, 8]  # the continuation is whole, the context keeps its end
    (no_bos,) = build_token_prompts([[5, 6]], [[7]], prefix=[], max_length=8)
    assert no_bos == [5, 6, 7]


def test_build_token_prompts_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        build_token_prompts([[1]], [[]], prefix=[2], max_length=8)
    with pytest.raises(ValueError, match="2 contexts but 1"):
        build_token_prompts([[1], [2]], [[3]], prefix=[], max_length=8)
    with pytest.raises(ValueError, match="more than max_length"):
        build_token_prompts([[1]], [[3, 4, 5]], prefix=[2], max_length=4)
    with pytest.raises(ValueError, match="nothing to condition on"):
        build_token_prompts([[]], [[3]], prefix=[], max_length=8)
    assert build_token_prompts([[]], [[3]], prefix=[2], max_length=8) == [[2, 3]]  # BOS alone is a context


def test_score_prompt_logprobs_sums_the_last_tokens() -> None:
    out = request_output([2, 10, 11, 7, 8], [-1.0, -2.0, -0.5, -0.25], extra_top=True)
    score = score_prompt_logprobs(out.prompt_token_ids, out.prompt_logprobs, 2)
    assert score == Score(-0.75, 2)
    assert score_prompt_logprobs(out.prompt_token_ids, out.prompt_logprobs, 4) == Score(-3.75, 4)
    # plain floats are accepted too (some versions' flat log-prob containers)
    plain = [None, {10: -1.0}, {11: -2.0}]
    assert score_prompt_logprobs([2, 10, 11], plain, 1) == Score(-2.0, 1)


def test_score_prompt_logprobs_errors_are_clear() -> None:
    out = request_output([2, 10, 7], [-1.0, -0.5])
    with pytest.raises(ValueError, match="prompt_logprobs=0"):
        score_prompt_logprobs(out.prompt_token_ids, None, 1)
    with pytest.raises(ValueError, match="cannot score 3"):
        score_prompt_logprobs(out.prompt_token_ids, out.prompt_logprobs, 3)  # position 0 has no log-prob
    broken = [None, {10: Logprob(-1.0)}, {999: Logprob(-0.1)}]  # the prompt's own token is missing
    with pytest.raises(ValueError, match="no log-prob for prompt token 2"):
        score_prompt_logprobs([2, 10, 7], broken, 1)


def test_score_request_outputs_keeps_request_order() -> None:
    outs = [request_output([2, 5, 6], [-1.0, -2.0]), request_output([2, 5, 6, 7], [-1.0, -3.0, -4.0])]
    assert score_request_outputs(outs, [1, 2]) == [Score(-2.0, 1), Score(-7.0, 2)]
    with pytest.raises(ValueError, match="2 outputs for 1 requests"):
        score_request_outputs(outs, [1])


def test_mapping_reproduces_the_hf_backend_scores() -> None:
    """Build the token prompts, fill RequestOutput-shaped objects with real log-probs, map them back.

    The log-probs come from the transformers model itself, so this checks that the vLLM backend's
    prompts and its extraction together give exactly what the HF backend computes.
    """
    import torch

    from llmr.llm import load_llm

    hf = load_llm("gemma-3-270m", dtype="fp32")
    contexts = ["The capital of France is", "Q: What colour is the sky?\nA:", "1, 2, 3,"]
    continuations = [" Paris", " Blue, mostly.", " 4"]
    encode = hf._encode  # the HF backend's own tokenization: continuation on its own, no special tokens
    cont_ids = encode(continuations)
    prompts = build_token_prompts(encode(contexts), cont_ids, hf._prefix, max_length=2048)
    assert all(p[0] == hf.tokenizer.bos_token_id for p in prompts)  # Gemma adds BOS
    outputs = []
    for ids in prompts:
        with torch.inference_mode():
            logits = hf.model(input_ids=torch.tensor([ids])).logits.float()[0]
        lp = torch.log_softmax(logits[:-1], -1)
        entries = [None] + [{tok: Logprob(float(lp[i, tok]))} for i, tok in enumerate(ids[1:])]
        outputs.append(SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=entries))
    mapped = score_request_outputs(outputs, [len(c) for c in cont_ids])
    for got, want in zip(mapped, hf.score(contexts, continuations), strict=True):
        assert got.n_tokens == want.n_tokens
        assert got.logprob == pytest.approx(want.logprob, abs=1e-3)


def test_vllm_engine_on_gpu() -> None:
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a GPU")
    from llmr.llm import load_llm

    llm = load_llm("gemma-3-270m", backend="vllm", dtype="float32", gpu_memory_utilization=0.3)
    hf = load_llm("gemma-3-270m", backend="hf", dtype="fp32", device="cpu")
    contexts = ["The capital of France is"] * 2 + ["1, 2, 3,"]
    continuations = [" Paris", " Berlin", " 4"]
    got, want = llm.score(contexts, continuations), hf.score(contexts, continuations)
    assert got[0].logprob > got[1].logprob
    for g, w in zip(got, want, strict=True):
        assert g.n_tokens == w.n_tokens
        assert g.logprob == pytest.approx(w.logprob, abs=0.05 * w.n_tokens + 0.05)
    (out,) = llm.generate(["Q: What is the capital of France?\nA: Paris\n\nQ: What is the capital of Italy?\nA:"], 12)
    assert "Rome" in out and "\n" not in out
    assert llm.fingerprint.startswith("vllm:gemma-3-270m")
