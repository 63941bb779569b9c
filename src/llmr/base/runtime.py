"""Encoders outside PyTorch: a sentence-transformers bi-encoder (the retriever) or cross-encoder (the reward
model) exported to ONNX and run by ONNX Runtime or OpenVINO, optionally with int8 weights.

sentence-transformers' own `backend="onnx"` goes through optimum, whose releases pin an older transformers
than llmr's (../shared/notes/stack.md), so the graph is exported here with `torch.onnx.export` from the
loaded model itself: the same tokenizer, truncation, pooling and head. An export is a folder (`model.onnx`,
`model_int8.onnx`, the tokenizer, `export.json` naming the weights it came from); `llmr export MODEL`
writes one into `MODEL/onnx/`, and an encoder asked for another runtime finds it there or makes one in
the cache. `benchmarks/encoders.py` measures each runtime's speed and agreement with torch fp32.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmr.base.files import cache_dir, publish, write_json
from llmr.base.manifest import config_hash

Runtime = Literal["torch", "onnx", "onnx-int8", "openvino"]
RUNTIMES: tuple[str, ...] = ("torch", "onnx", "onnx-int8", "openvino")
RUNTIME_HELP = "Encoder runtime: torch, onnx (ONNX Runtime), onnx-int8 (int8 weights) or openvino."
Kind = Literal["bi", "cross"]
EXPORT = "export.json"
OUTPUT = {"bi": "sentence_embedding", "cross": "scores"}


def serving_runtime() -> Runtime:
    """The default of `llmr serve`: the fastest installed runtime that keeps recall@8 >= 0.98 against torch
    fp32 (benchmarks/RESULTS.md, "Encoder runtimes"): openvino, else onnx, else torch. int8 is never chosen."""
    import importlib.util

    for runtime, module in (("openvino", "openvino"), ("onnx", "onnxruntime")):
        if importlib.util.find_spec(module) and importlib.util.find_spec("onnx"):
            return runtime  # type: ignore[return-value]
    return "torch"


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown encoder runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")


def export(model_path: str, kind: Kind, out: Path, source: str, quantize: bool = True) -> Path:
    """Export the model at `model_path` (fp32) to `out`: model.onnx, and with `quantize` model_int8.onnx
    (int8 weights; activations quantized per batch at run time). `source`, the weights' fingerprint, is
    recorded, so an export of other weights is not used."""
    import torch

    if kind == "bi":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(model_path, device="cpu")
        if type(model[0]).__name__ == "Router":
            raise ValueError(f"{model_path}: a query/document Router has two encoders; export supports one")
    else:
        from sentence_transformers.cross_encoder import CrossEncoder

        model = CrossEncoder(model_path, device="cpu")
    model.eval()
    tokenizer = model.tokenizer
    names = list(tokenizer.model_input_names)
    pair = (["a query", "a longer query"], ["a candidate", "another candidate"])
    texts = pair if kind == "cross" else (["an example", "a second, longer example text"],)
    sample = tokenizer(*texts, padding=True, return_tensors="pt")

    class Graph(torch.nn.Module):  # positional inputs in, the model's output out
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return self.model(dict(zip(names, inputs, strict=True)))[OUTPUT[kind]]

    def write(folder: Path) -> None:
        axes = {name: {0: "batch", 1: "tokens"} for name in names}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes it fixes: the axes above stay dynamic
            torch.onnx.export(
                Graph().eval(),
                tuple(sample[n] for n in names),
                str(folder / "model.onnx"),
                input_names=names,
                output_names=["output"],
                dynamic_axes={**axes, "output": {0: "batch"}},
                opset_version=17,
                dynamo=False,  # the tracing exporter handles transformers' BERT; see the module docstring
            )
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            # per-channel int8 on the MatMul weights: cosine to fp32 ~0.99 for MiniLM, where the default
            # (per-tensor, every op) gives 0.91-0.97
            logging.disable(logging.WARNING)  # onnxruntime suggests a pre-processing pass on the root logger
            try:
                quantize_dynamic(
                    folder / "model.onnx",
                    folder / "model_int8.onnx",
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    op_types_to_quantize=["MatMul"],
                )
            finally:
                logging.disable(logging.NOTSET)
        tokenizer.save_pretrained(str(folder))
        meta = {"kind": kind, "source": source, "max_length": model.max_seq_length, "inputs": names}
        write_json(folder / EXPORT, {**meta, "int8": quantize})

    publish(out, write)
    return out


def exported(folder: Path, source: str, int8: bool = False) -> bool:
    """Whether `folder` holds an export of these weights (and, if asked, its int8 model)."""
    try:
        meta = json.loads((folder / EXPORT).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("source") == source and (not int8 or meta.get("int8", False))


class ExportedModel:
    """An export run by ONNX Runtime (`onnx`, `onnx-int8`) or OpenVINO: texts (bi) or pairs (cross) in, the
    model's outputs out as float32, batched by length like sentence-transformers."""

    def __init__(self, folder: Path, runtime: Runtime, threads: int | None = None) -> None:
        from transformers import AutoTokenizer

        check_runtime(runtime)
        meta = json.loads((folder / EXPORT).read_text())
        self.kind: Kind = meta["kind"]
        self.max_length: int = meta["max_length"]
        self.inputs: list[str] = meta["inputs"]
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        threads = threads or len(os.sched_getaffinity(0))
        if runtime == "openvino":
            import openvino

            core = openvino.Core()
            core.set_property("CPU", {"INFERENCE_NUM_THREADS": threads})
            compiled = core.compile_model(str(folder / "model.onnx"), "CPU")
            self._run = lambda feed: compiled(feed)[compiled.output(0)]
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            name = "model_int8.onnx" if runtime == "onnx-int8" else "model.onnx"
            session = ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
            self._run = lambda feed: session.run(None, feed)[0]

    def __call__(self, items: Sequence[Any], batch_size: int = 64, max_length: int | None = None) -> np.ndarray:
        """Outputs in input order; `max_length` caps tokens below the model's own cap (e.g. for queries)."""
        if not items:
            return np.zeros((0, 0), dtype=np.float32)
        cap = min(max_length or self.max_length, self.max_length)
        lengths = [sum(len(t) for t in item) if self.kind == "cross" else len(item) for item in items]
        order = np.argsort([-n for n in lengths], kind="stable")
        parts = []
        for start in range(0, len(items), batch_size):
            batch = [items[i] for i in order[start : start + batch_size]]
            if self.kind == "cross":
                encoded = self.tokenizer(
                    [a for a, _ in batch], [b for _, b in batch], padding=True, truncation=True, max_length=cap
                )
            else:
                encoded = self.tokenizer(batch, padding=True, truncation=True, max_length=cap)
            parts.append(self._run({n: np.asarray(encoded[n], dtype=np.int64) for n in self.inputs}))
        out = np.concatenate(parts).astype(np.float32)
        restored = np.empty_like(out)
        restored[order] = out
        return restored


def export_folder(path: str, weights: str, kind: Kind, int8: bool) -> Path:
    """The model's ONNX export: `<model>/onnx` (written by `llmr export`) when it matches the weights, else
    one in the cache, made now if missing (the embedded model's folder is not ours to write into)."""
    beside = Path(path) / "onnx"
    if exported(beside, weights, int8):
        return beside
    cached = cache_dir() / "onnx" / config_hash({"weights": weights, "kind": kind})
    if not exported(cached, weights, int8):
        import importlib.util

        export(path, kind, cached, weights, quantize=importlib.util.find_spec("onnxruntime") is not None)
    return cached
