"""`llmr score`: the LLM scores each query's candidates (LLM-R's feedback), resumable and cached."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llmr.base.files import cache_dir, file_fingerprint
from llmr.base.manifest import is_up_to_date, manifest_path, write_manifest
from llmr.cli.llm import Placement, backend_options, make_engine, placement_options
from llmr.cli.settings import stage_settings
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl
from llmr.data.schema import CandidateList
from llmr.llm import load_llm
from llmr.pipeline.config import LLMSection
from llmr.scoring.cache import ScoreCache
from llmr.scoring.feedback import ScoringConfig, make_jobs, plan, score_to_file, settings_key

console = Console()


@stage_settings("scoring", "llm")
@placement_options
def score(
    scoring: ScoringConfig,
    llm: LLMSection,
    candidates: Path = typer.Option(..., "--candidates", "-c", help="Candidate-list file from `llmr candidates`."),
    data: Path = typer.Option(Path("runs/data"), help="Data folder whose passages the candidates point into."),
    out: Path = typer.Option(..., "--out", "-o", help="Scored candidate-list file to write (.jsonl[.gz])."),
    cache: Path = typer.Option(None, help="Score cache (SQLite). Default: $LLMR_CACHE/scores.sqlite."),
    dry_plan: bool = typer.Option(
        False, "--plan", help="Print pairs, tokens and an estimated time from a calibration batch; score nothing."
    ),
    force: bool = typer.Option(False, help="Rewrite the output even when it matches this config and inputs."),
    placement: Placement = None,  # type: ignore[assignment]  # its options: @placement_options
) -> None:
    """Score each query's candidates by mean log p(answer | candidate, query) with a frozen LLM."""
    folder = DataDir(data)
    inputs = {"candidates": file_fingerprint(candidates), "passages": file_fingerprint(folder.path("passages"))}
    passages = {p.id: p for p in folder.passages()}
    jobs = make_jobs(read_jsonl(candidates, CandidateList), passages, scoring)
    options = backend_options(llm.backend, llm.dtype, llm.batch_tokens)
    store = ScoreCache(cache or cache_dir() / "scores.sqlite")
    if dry_plan:  # a calibration batch on one local replica
        model = load_llm(llm.model, llm.backend, **options)
        report = plan(jobs, model, store, scoring)
        table = Table(title=f"scoring plan with {model.fingerprint}", show_header=False)
        for key, value in report.items():
            shown = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else "-"
            table.add_row(key.replace("_", " "), shown)
        eta = report["estimated_seconds"]
        table.add_row("estimated time", f"{eta / 60:,.1f} min ({eta / 3600:,.2f} h)")
        console.print(table)
        return
    runner = make_engine(placement, llm.model, llm.backend, options)
    # The engine decides placement, not results (the same chunks): leave it out of the key.
    settings = {"stage": "score", "llm": runner.fingerprint, **settings_key(scoring)}
    if not force and is_up_to_date(out, settings, inputs):
        runner.close()
        console.print(f"{out} is up to date (same model, config and inputs); --force rewrites it")
        return
    try:
        stats = score_to_file(jobs, runner, store, scoring, out)
    finally:
        runner.close()
    write_manifest(manifest_path(out), "score", settings, inputs=inputs, outputs=[out], stats=stats)
    console.print(
        f"{stats['queries']:,} queries, {stats['pairs']:,} unique pairs ({stats['cached']:,} from cache, "
        f"{stats['scored']:,} scored) -> {out}"
    )
