"""`llmr candidates`: top-N pool items per query (BM25 now; a trained retriever later)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from llmr.base.encoders import encoder_fingerprint
from llmr.base.files import file_fingerprint
from llmr.base.manifest import is_up_to_date, manifest_path, write_manifest
from llmr.candidates import load_retriever, mine_to_file
from llmr.candidates.mine import available
from llmr.cli.settings import stage_settings
from llmr.data.build import select_records
from llmr.data.directory import DataDir
from llmr.pipeline.config import CandidatesSection

console = Console()


@stage_settings("candidates")
def candidates(
    candidates: CandidatesSection,
    data: Path = typer.Option(Path("runs/data"), help="Data folder with passages and the query split."),
    out: Path = typer.Option(..., "--out", "-o", help="Candidate-list file to write (.jsonl or .jsonl.gz)."),
    split: str = typer.Option("train", help="Which records to mine for: train or test."),
    retriever: str = typer.Option(
        "bm25", help="'bm25', or a dense encoder: a trained llmr retriever folder, 'all-minilm-l6-v2', a hub id."
    ),
    tasks: str = typer.Option(None, help="Only these tasks (names, categories, 'all')."),
    seed: int = typer.Option(42, help="Seed of the per-task sample."),
    threads: int = typer.Option(0, help="BM25 search threads (0 = one)."),
    force: bool = typer.Option(False, help="Redo even when the output matches this config and inputs."),
) -> None:
    """For each query, the top-N pool items (never the query's own item), as a candidate-list file."""
    folder = DataDir(data)
    inputs = {name: file_fingerprint(folder.path(name)) for name in ("passages", split)}
    if Path(retriever).is_dir():  # a trained retriever: its weights
        inputs["retriever"] = encoder_fingerprint(retriever, retriever)
    config = {
        "stage": "candidates",
        "split": split,
        "retriever": retriever,
        **candidates.model_dump(),
        "tasks": tasks,
        "seed": seed,  # picks the per-task sample
    }
    if not force and is_up_to_date(out, config, inputs):
        console.print(f"{out} is up to date (same config and inputs); --force redoes it")
        return
    passages = list(folder.passages())
    records = select_records(list(folder.records(split)), tasks, candidates.max_per_task, seed)
    with console.status(f"indexing {len(passages):,} pool items with {retriever}"):
        index = load_retriever(retriever, passages, n_threads=threads)
    count = mine_to_file(records, passages, index, out, top_n=candidates.top_n, scope=candidates.scope)
    write_manifest(manifest_path(out), "candidates", config, inputs=inputs, outputs=[out], retriever=index.config)
    top = available(records, passages, candidates.top_n, candidates.scope)  # capped: said by a warning
    console.print(f"{count:,} candidate lists (top {top}, scope {candidates.scope}) -> {out}")
