"""`llmr export`: a trained retriever or reward model as ONNX, beside its weights (fast encoders)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from llmr.base.encoders import encoder_fingerprint, resolve_encoder
from llmr.base.runtime import export

console = Console(stderr=True)


def export_cmd(
    model: Path = typer.Argument(..., help="A retriever or reward-model folder (sentence-transformers)."),
    kind: str = typer.Option("auto", help="bi (retriever), cross (reward model) or auto (from its config.json)."),
    int8: bool = typer.Option(True, "--int8/--no-int8", help="Also write int8 weights (model_int8.onnx)."),
) -> None:
    """Write MODEL/onnx/ (model.onnx, model_int8.onnx, the tokenizer); --runtime onnx, onnx-int8 or openvino
    then uses it: llmr serve, llmr eval --encoder-runtime, the pipeline's encoder_runtime."""
    path = Path(resolve_encoder(str(model)))
    if not (path / "config.json").is_file():
        raise typer.BadParameter(f"{model} is not a model folder (no config.json)", param_hint="MODEL")
    if kind == "auto":
        architectures = json.loads((path / "config.json").read_text()).get("architectures") or [""]
        kind = "cross" if architectures[0].endswith("ForSequenceClassification") else "bi"
    if kind not in ("bi", "cross"):
        raise typer.BadParameter("expected bi, cross or auto", param_hint="--kind")
    with console.status(f"exporting {model} ({kind}-encoder)"):
        out = export(str(path), kind, path / "onnx", encoder_fingerprint(str(model), str(path)), int8)  # type: ignore[arg-type]
    console.print(f"{kind}-encoder -> {out} ({', '.join(sorted(p.name for p in out.glob('*.onnx')))})")
