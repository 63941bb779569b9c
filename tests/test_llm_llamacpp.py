"""The llama.cpp backend with the real embedded GGUF models (needs the optional llama-cpp-python)."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

from llmr.llm import LLM, load_llm
from llmr.llm.llamacpp import LlamaCppLLM

PAIRS = [
    ("The capital of France is", " Paris"),
    ("The capital of France is", " Berlin"),
    ("Q: What colour is the sky on a clear day?\nA:", " Blue."),
    ("Q: What colour is the sky on a clear day?\nA:", " Green."),
    ('Review: "a stirring, funny and moving film" Is this movie review sentence negative or positive?\n', "Positive"),
    ('Review: "a stirring, funny and moving film" Is this movie review sentence negative or positive?\n', "Negative"),
    ("one two three four five six seven eight nine ten " * 4 + "eleven", " twelve thirteen"),
    ("one two three four five six seven eight nine ten " * 4 + "eleven", " apple banana"),
    ("Water freezes at zero degrees", " Celsius"),
    ("Water freezes at zero degrees", " Kelvin"),
    ("def add(a, b):\n   ", " return a + b"),
    ("def add(a, b):\n   ", " print(a)"),
]
CONTEXTS = [c for c, _ in PAIRS]
CONTINUATIONS = [a for _, a in PAIRS]


@pytest.fixture(scope="module")
def gemma() -> LlamaCppLLM:
    llm = load_llm("gemma-3-270m", backend="llamacpp")
    assert isinstance(llm, LlamaCppLLM)
    return llm


def test_right_answer_outscores_wrong(gemma: LLM) -> None:
    paris, berlin = gemma.score(["The capital of France is"] * 2, [" Paris", " Berlin"])
    assert paris.n_tokens == berlin.n_tokens == 1
    assert paris.logprob > berlin.logprob
    neg, pos = gemma.rank_options(
        'Review: "awful, a waste of time" Is this movie review sentence negative or positive?\nNegative\n\n'
        'Review: "boring, ugly and far too long" Is this movie review sentence negative or positive?\n',
        ["Negative", "Positive"],
    )
    assert neg > pos


def test_batched_equals_one_at_a_time(gemma: LlamaCppLLM) -> None:
    batched = gemma.score(CONTEXTS, CONTINUATIONS)
    # one at a time, in reverse, each with a cold cache: no reuse of the previous context's KV
    single = []
    for ctx, cont in reversed(PAIRS):
        gemma._cached = None
        single.append(gemma.score([ctx], [cont])[0])
    for got, want in zip(batched, single[::-1], strict=True):
        assert got.n_tokens == want.n_tokens
        assert got.logprob == pytest.approx(want.logprob, abs=1e-4)
    assert gemma.score(CONTEXTS, CONTINUATIONS) == batched  # repeatable


def test_reuse_of_the_context_cache_changes_nothing(gemma: LlamaCppLLM) -> None:
    gemma.reuse_context = False
    try:
        fresh = gemma.score(CONTEXTS, CONTINUATIONS)
    finally:
        gemma.reuse_context = True
    reused = gemma.score(CONTEXTS, CONTINUATIONS)
    for a, b in zip(fresh, reused, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_generate_is_greedy_and_stops_at_newline(gemma: LLM) -> None:
    prompts = ["Q: What is the capital of France?\nA: Paris\n\nQ: What is the capital of Italy?\nA:", "1, 2, 3, 4,"]
    out = gemma.generate(prompts, max_new_tokens=12)
    assert "Rome" in out[0] and "\n" not in out[0]
    assert out[1].startswith(" 5")
    assert gemma.generate(prompts, max_new_tokens=12) == out
    (unstopped,) = gemma.generate(prompts[:1], max_new_tokens=20, stop=None)
    assert unstopped.startswith(out[0] + "\n")  # the same greedy text, going on past the newline
    # scoring after generation still starts from a clean cache
    (paris,) = gemma.score(["The capital of France is"], [" Paris"])
    assert paris == gemma.score(["The capital of France is"] * 2, [" Paris", " Berlin"])[0]


def test_long_context_is_cut_from_the_left(gemma: LlamaCppLLM) -> None:
    (short,) = gemma.score(["word " * 3000], [" end of it"])  # far beyond n_ctx = 2048
    assert short.n_tokens == 3 and short.logprob < 0
    with pytest.raises(ValueError, match="more than max_length"):
        gemma.score(["a"], ["word " * 3000])


def test_bad_inputs_raise(gemma: LLM) -> None:
    with pytest.raises(ValueError, match="empty"):
        gemma.score(["a"], [""])
    with pytest.raises(ValueError, match="2 contexts but 1"):
        gemma.score(["a", "b"], ["c"])
    assert gemma.score([], []) == []
    with pytest.raises(ValueError, match=r"\.gguf file or an embedded model"):
        LlamaCppLLM("no-such-model")


def test_fingerprint_names_the_file(gemma: LLM) -> None:
    assert gemma.fingerprint.startswith("llamacpp:gemma-3-270m-Q4_K_M.gguf:")


def test_agrees_with_the_transformers_backend(gemma: LLM) -> None:
    """Same model, two engines: Q4_K_M in llama.cpp vs its dequantized weights in transformers (fp32)."""
    hf = load_llm("gemma-3-270m", dtype="fp32")
    here, there = gemma.score(CONTEXTS, CONTINUATIONS), hf.score(CONTEXTS, CONTINUATIONS)
    diffs = []
    for a, b in zip(here, there, strict=True):
        assert a.n_tokens == b.n_tokens  # the two tokenizers give the same tokens
        diffs.append(abs(a.logprob - b.logprob) / a.n_tokens)
    assert sum(diffs) / len(diffs) < 0.1
    for i in range(0, len(PAIRS), 2):  # both engines rank right vs wrong the same way
        assert (here[i].logprob > here[i + 1].logprob) == (there[i].logprob > there[i + 1].logprob)


def test_smollm2_loads_and_scores_without_bos() -> None:
    llm = LlamaCppLLM("smollm2-135m")
    assert llm._prefix == []  # SmolLM2 is trained without BOS
    paris, berlin = llm.score(["The capital of France is"] * 2, [" Paris", " Berlin"])
    assert paris.logprob > berlin.logprob
    (single,) = llm.score(["The capital of France is"], [" Paris"])
    assert single.logprob == pytest.approx(paris.logprob, abs=1e-4)
    with pytest.raises(ValueError, match="nothing to condition on"):
        llm.score([""], [" Paris"])
    llm.close()
