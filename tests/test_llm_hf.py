"""The transformers backend with the real embedded Gemma-3-270M (and SmolLM2-135M)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from llmr.llm import load_llm
from llmr.llm.base import LLM, Score

CONTEXTS = [
    "The capital of France is",
    'Review: "a stirring, funny and moving film" Is this movie review sentence negative or positive?\n',
    "one two three four five six seven eight nine ten " * 6 + "eleven",
    "Q: What colour is the sky on a clear day?\nA:",
]
CONTINUATIONS = [" Paris", "Positive", " twelve", " The sky is blue, because of Rayleigh scattering."]


@pytest.fixture(scope="module")
def gemma_fp32() -> LLM:
    return load_llm("gemma-3-270m", dtype="fp32")


@pytest.fixture(scope="module")
def gemma_bf16() -> LLM:
    return load_llm("gemma-3-270m", dtype="bf16")


def naive_scores(llm, contexts, continuations) -> list[float]:
    """Reference: one sequence at a time, full logits, no tricks."""
    out = []
    for ctx, cont in zip(contexts, continuations, strict=True):
        ctx_ids = llm._prefix + llm.tokenizer(ctx, add_special_tokens=False)["input_ids"]
        cont_ids = llm.tokenizer(cont, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([ctx_ids + cont_ids])
        with torch.inference_mode():
            logits = llm.model(input_ids=ids).logits.float()[0]
        lp = torch.log_softmax(logits[:-1], -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
        out.append(float(lp[-len(cont_ids) :].sum()))
    return out


def test_batched_equals_naive_fp32(gemma_fp32: LLM) -> None:
    batched = gemma_fp32.score(CONTEXTS, CONTINUATIONS)
    reference = naive_scores(gemma_fp32, CONTEXTS, CONTINUATIONS)
    assert [s.n_tokens for s in batched] == [1, 1, 1, len(gemma_fp32.tokenizer(CONTINUATIONS[3])["input_ids"]) - 1]
    for got, want in zip(batched, reference, strict=True):
        assert got.logprob == pytest.approx(want, abs=1e-3)


def test_batched_equals_one_at_a_time_bf16(gemma_bf16: LLM) -> None:
    batched = gemma_bf16.score(CONTEXTS, CONTINUATIONS)
    single = [gemma_bf16.score([c], [a])[0] for c, a in zip(CONTEXTS, CONTINUATIONS, strict=True)]
    for got, want in zip(batched, single, strict=True):
        assert got.n_tokens == want.n_tokens
        # bf16 rounding depends on the padded width; measured: up to ~0.1 nats summed.
        assert got.logprob == pytest.approx(want.logprob, abs=0.25)


def test_order_of_pairs_does_not_change_scores(gemma_fp32: LLM) -> None:
    forward = gemma_fp32.score(CONTEXTS, CONTINUATIONS)
    backward = gemma_fp32.score(CONTEXTS[::-1], CONTINUATIONS[::-1])[::-1]
    for a, b in zip(forward, backward, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)


def test_small_token_budget_gives_same_scores(gemma_fp32: LLM) -> None:
    full = gemma_fp32.score(CONTEXTS, CONTINUATIONS)
    gemma_fp32.batch_tokens = 16  # forces one sequence per forward pass
    try:
        tiny = gemma_fp32.score(CONTEXTS, CONTINUATIONS)
    finally:
        gemma_fp32.batch_tokens = 8192
    for a, b in zip(full, tiny, strict=True):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-3)


def test_right_answer_outscores_wrong(gemma_bf16: LLM) -> None:
    paris, berlin = gemma_bf16.score(["The capital of France is"] * 2, [" Paris", " Berlin"])
    assert paris.logprob > berlin.logprob
    demo = 'Review: "wonderful, a joy to watch" Is this movie review sentence negative or positive?\nPositive\n\n'
    query = 'Review: "boring, ugly and far too long" Is this movie review sentence negative or positive?\n'
    neg, pos = gemma_bf16.rank_options(
        demo.replace("Positive", "Negative").replace("wonderful, a joy to watch", "awful, a waste of time") + query,
        ["Negative", "Positive"],
    )
    assert neg > pos


def test_long_context_is_cut_from_the_left(gemma_fp32: LLM) -> None:
    gemma_fp32.max_length = 12
    try:
        (s,) = gemma_fp32.score(["word " * 100], [" end of it"])
    finally:
        gemma_fp32.max_length = 2048
    assert s.n_tokens == 3 and s.logprob < 0


def test_bad_inputs_raise(gemma_fp32: LLM) -> None:
    with pytest.raises(ValueError, match="empty"):
        gemma_fp32.score(["a"], [""])
    with pytest.raises(ValueError, match="2 contexts but 1"):
        gemma_fp32.score(["a", "b"], ["c"])
    assert gemma_fp32.score([], []) == []


def test_generate_is_greedy_and_stops_at_newline(gemma_bf16: LLM) -> None:
    prompts = ["Q: What is the capital of France?\nA: Paris\n\nQ: What is the capital of Italy?\nA:", "1, 2, 3, 4,"]
    out = gemma_bf16.generate(prompts, max_new_tokens=12)
    assert "Rome" in out[0] and "\n" not in out[0]
    assert out[1].startswith(" 5")
    assert gemma_bf16.generate(prompts, max_new_tokens=12) == out  # deterministic
    assert gemma_bf16.generate(prompts[:1], max_new_tokens=12) == out[:1]  # batch-independent


def test_fingerprint_names_model_and_dtype(gemma_fp32: LLM, gemma_bf16: LLM) -> None:
    assert "gemma-3-270m" in gemma_fp32.fingerprint and gemma_fp32.fingerprint.endswith("float32")
    assert gemma_bf16.fingerprint != gemma_fp32.fingerprint


def test_score_mean() -> None:
    assert Score(-6.0, 3).mean == -2.0


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_smollm2_scores_without_bos() -> None:
    llm = load_llm("smollm2-135m", dtype="fp32")
    assert llm._prefix == []  # SmolLM2 is trained without BOS
    paris, berlin = llm.score(["The capital of France is"] * 2, [" Paris", " Berlin"])
    assert paris.logprob > berlin.logprob
    (single,) = llm.score(["The capital of France is"], [" Paris"])
    assert single.logprob == pytest.approx(paris.logprob, abs=1e-3)


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown LLM backend 'nope'; known: hf"):
        load_llm("gemma-3-270m", backend="nope")


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_shared_prefix_option_scores_equal_pairwise_scores(gemma_fp32: LLM) -> None:
    """score_options runs each context once (a copied KV cache per option): the same numbers as score(),
    also past Gemma's 512-token sliding window and with options of different lengths."""
    long = "".join(f"Review: film number {i} was fine.\nPositive\n\n" for i in range(60)) + "Review: awful\n"
    contexts = [CONTEXTS[1], "Q: 2+2?\nA:", long]
    options = [["Negative", "Positive"], [" 4", " four", " five apples"], ["Negative", "Positive"]]
    assert gemma_fp32.count_tokens([long])[0] > 512
    shared = gemma_fp32.score_options(contexts, options)
    pairwise = LLM.score_options(gemma_fp32, contexts, options)
    for got, want in zip(shared, pairwise, strict=True):
        assert [s.n_tokens for s in got] == [s.n_tokens for s in want]
        assert [s.logprob for s in got] == pytest.approx([s.logprob for s in want], abs=1e-3)
    assert gemma_fp32.rank_options(contexts[1], options[1])[0] == pytest.approx(shared[1][0].mean, abs=1e-4)


def test_a_local_models_fingerprint_follows_its_contents(tmp_path: Path) -> None:
    """The score and outcome caches are keyed by it: an edited config.json must not hit the old scores."""
    from llmr.llm.models import model_fingerprint

    (tmp_path / "config.json").write_text('{"rope_theta": 10000}')
    (tmp_path / "model.safetensors").write_bytes(b"w" * 100)
    before = model_fingerprint(str(tmp_path))
    (tmp_path / "config.json").write_text('{"rope_theta": 20000}')
    assert model_fingerprint(str(tmp_path)) != before
    assert model_fingerprint("org/hub-model") == "org/hub-model"


def test_a_weights_file_swapped_in_place_is_a_new_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large files were keyed by size and mtime: the same size and mtime with other bytes kept the old scores."""
    import os

    from llmr.base.files import folder_fingerprint

    monkeypatch.setenv("LLMR_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(b"w" * 1000)
    stat = weights.stat()
    before = folder_fingerprint(model, remember_above=100)
    assert str(weights.resolve()) in (tmp_path / "cache" / "file-hashes.json").read_text()  # hashed once, kept
    assert folder_fingerprint(model, remember_above=100) == before
    weights.write_bytes(b"\0" * 1000)  # all zeros, same size, mtime put back
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert folder_fingerprint(model, remember_above=100) != before


def test_two_conversions_of_one_gguf_fingerprint_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wiped cache or another LLMR_CACHE converts again, at another time: the cached scores must still hit."""
    import time

    from llmr.base import files
    from llmr.llm import models

    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 4)
    keys: list[str] = []

    def convert(path: Path, key: str) -> Path:  # stands in for the dequantization: the same bytes, a new mtime
        keys.append(key)
        out = files.cache_dir() / "models" / key
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(path.read_bytes() * 2)
        return out

    monkeypatch.setattr(models, "_converted_gguf", convert)
    prints = []
    for cache in ("one", "two"):
        monkeypatch.setenv("LLMR_CACHE", str(tmp_path / cache))
        path, name = models.resolve_hf_model(str(gguf))
        prints.append(models.folder_fingerprint(path, remember_above=100))
        time.sleep(0.01)
    assert keys[0] == keys[1] and prints[0] == prints[1] and name == str(gguf.resolve())
    # An all-zero file of the same size is another model: another conversion (here, it would fail to load).
    gguf.write_bytes(bytes(gguf.stat().st_size))
    models.resolve_hf_model(str(gguf))
    assert keys[2] != keys[0]


@pytest.mark.slow  # two real dequantizations (~1 min each)
def test_a_real_conversion_is_byte_identical_in_two_cache_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scores are keyed by the converted folder's content: a second conversion must be served from cache."""
    from llmr.llm import models

    prints = []
    for cache in ("one", "two"):
        monkeypatch.setenv("LLMR_CACHE", str(tmp_path / cache))
        path, _ = models.resolve_hf_model("smollm2-135m")
        prints.append(models.model_fingerprint(path))
    assert prints[0] == prints[1]


def test_an_embedded_model_keeps_one_converted_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmr.llm import models

    monkeypatch.setenv("LLMR_CACHE", str(tmp_path))
    assembled: list[Path] = []

    def convert(gguf: Path, key: str) -> Path:  # stands in for the ~1 min dequantization
        assert gguf.is_file() and gguf.stat().st_size > 100_000_000
        assembled.append(gguf)
        out = tmp_path / "models" / key
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        return out

    monkeypatch.setattr(models, "_converted_gguf", convert)
    path, name = models.resolve_hf_model("gemma-3-270m")
    assert path == str(tmp_path / "models" / "gemma-3-270m") and name == "gemma-3-270m (GGUF of google/gemma-3-270m)"
    assert not assembled[0].exists()  # the assembled GGUF went once converted
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    monkeypatch.setattr(models.EmbeddedModel, "gguf_path", lambda *a: pytest.fail("the copy is there: no GGUF needed"))
    assert models.resolve_hf_model("gemma-3-270m")[0] == path
