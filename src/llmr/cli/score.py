"""`llmr score`: the LLM scores each query's candidates (LLM-R's feedback), resumable and cached."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llmr.base.files import file_fingerprint
from llmr.base.manifest import is_up_to_date, manifest_path, write_manifest
from llmr.cli.llm import (
    ADDRESS,
    CPUS_PER_WORKER,
    DTYPE_HELP,
    ENGINE,
    GPUS_PER_WORKER,
    MODEL_HELP,
    WORKERS,
    backend_options,
    make_engine,
)
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl
from llmr.data.schema import CandidateList
from llmr.llm import DEFAULT_LLM, load_llm
from llmr.llm.models import cache_dir
from llmr.scoring.cache import ScoreCache
from llmr.scoring.feedback import ScoringConfig, make_jobs, plan, score_to_file

console = Console()


def score(
    candidates: Path = typer.Option(..., "--candidates", "-c", help="Candidate-list file from `llmr candidates`."),
    data: Path = typer.Option(Path("runs/data"), help="Data folder whose passages the candidates point into."),
    out: Path = typer.Option(..., "--out", "-o", help="Scored candidate-list file to write (.jsonl[.gz])."),
    model: str = typer.Option(DEFAULT_LLM, help=MODEL_HELP),
    backend: str = typer.Option("hf", help="LLM backend (see `llmr.llm.BACKENDS`)."),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    batch_tokens: int = typer.Option(8192, help="hf backend: token budget of one forward pass."),
    n_candidates: int = typer.Option(
        32, help="M: candidates sampled per query (the paper: 32; 8-16 keeps CPU runs short)."
    ),
    max_per_task: int = typer.Option(
        0, help="Score at most N queries per task, a seeded sample nested in larger ones (0 = all)."
    ),
    seed: int = typer.Option(42, help="Seed of the per-query candidate sample and of --max-per-task."),
    penalize_other_task: bool = typer.Option(True, help="Score candidates from another task -100 (no LLM call)."),
    penalize_label_mismatch: bool = typer.Option(
        True, help="Classification: score candidates whose label differs from the query's -100 (no LLM call)."
    ),
    chunk_pairs: int = typer.Option(256, help="Pairs per committed chunk: the most work a kill can lose."),
    cache: Path = typer.Option(None, help="Score cache (SQLite). Default: $LLMR_CACHE/scores.sqlite."),
    dry_plan: bool = typer.Option(
        False, "--plan", help="Print pairs, tokens and an estimated time from a calibration batch; score nothing."
    ),
    force: bool = typer.Option(False, help="Rewrite the output even when it matches this config and inputs."),
    engine: str = ENGINE,
    address: str = ADDRESS,
    workers: int = WORKERS,
    cpus_per_worker: float = CPUS_PER_WORKER,
    gpus_per_worker: float = GPUS_PER_WORKER,
) -> None:
    """Score each query's candidates by mean log p(answer | candidate, query) with a frozen LLM."""
    config = ScoringConfig(
        n_candidates=n_candidates,
        seed=seed,
        penalize_other_task=penalize_other_task,
        penalize_label_mismatch=penalize_label_mismatch,
        chunk_pairs=chunk_pairs,
        max_per_task=max_per_task,
    )
    folder = DataDir(data)
    inputs = {"candidates": file_fingerprint(candidates), "passages": file_fingerprint(folder.path("passages"))}
    passages = {p.id: p for p in folder.passages()}
    jobs = make_jobs(read_jsonl(candidates, CandidateList), passages, config)
    options = backend_options(backend, dtype, batch_tokens)
    store = ScoreCache(cache or cache_dir() / "scores.sqlite")
    if dry_plan:  # a calibration batch on one local replica
        llm = load_llm(model, backend, **options)
        report = plan(jobs, llm, store)
        table = Table(title=f"scoring plan with {llm.fingerprint}", show_header=False)
        for key, value in report.items():
            shown = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else "-"
            table.add_row(key.replace("_", " "), shown)
        eta = report["estimated_seconds"]
        table.add_row("estimated time", f"{eta / 60:,.1f} min ({eta / 3600:,.2f} h)")
        console.print(table)
        return
    runner = make_engine(engine, model, backend, options, address, workers, cpus_per_worker, gpus_per_worker)
    # The chunk size and the engine decide batches and placement, not results: leave them out of the key.
    settings = {"stage": "score", "llm": runner.fingerprint, **vars(config), "chunk_pairs": None}
    if not force and is_up_to_date(out, settings, inputs):
        runner.close()
        console.print(f"{out} is up to date (same model, config and inputs); --force rewrites it")
        return
    try:
        stats = score_to_file(jobs, runner, store, config, out)
    finally:
        runner.close()
    write_manifest(manifest_path(out), "score", settings, inputs=inputs, outputs=[out], stats=stats)
    console.print(
        f"{stats['queries']:,} queries, {stats['pairs']:,} unique pairs ({stats['cached']:,} from cache, "
        f"{stats['scored']:,} scored) -> {out}"
    )
