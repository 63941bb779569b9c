"""`llmr eval`: in-context evaluation of example selectors, methods x tasks x k x seeds."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from llmr.base.files import file_fingerprint
from llmr.base.manifest import write_manifest
from llmr.base.runtime import RUNTIME_HELP
from llmr.cli.llm import DTYPE_HELP, MODEL_HELP, Placement, backend_options, make_engine, placement_options
from llmr.cli.settings import options_as
from llmr.data.build import select_records
from llmr.data.directory import DataDir
from llmr.evaluation import EvalSettings, OutcomeCache, evaluate_methods, write_report
from llmr.evaluation.html import write_html_report
from llmr.evaluation.rerank import check_method
from llmr.llm import DEFAULT_LLM
from llmr.pipeline.study import QUERY_CAP_HELP, EvalSection

console = Console()


def _ints(text: str, option: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint=option) from None


@placement_options
def eval_cmd(
    data: Path = typer.Option(Path("runs/data"), help="Data folder: passages (the pool) and the test split."),
    out: Path = typer.Option(Path("runs/eval"), "--out", "-o", help="Report folder (results, plots, explanations)."),
    methods: str = typer.Option(
        "zero,random,kmeans,bm25,dense",
        help="Comma-separated: zero, random, kmeans, bm25, dense, dense:<encoder>, <name>:<retriever folder> "
        "(e.g. llmr:runs/pipeline/retriever), <name>:<candidate-list file> (each query's top k by doc_scores), "
        "cone (the LLM reranks BM25+dense's top 16 by log p(query | example): 16 LLM passes per query).",
    ),
    tasks: str = typer.Option(
        None, help="Only these tasks (names, categories, 'all'); default: every task in the data."
    ),
    k: str = typer.Option("8", help="Examples per prompt; several: '4,8'. The paper: 8."),
    seeds: str = typer.Option("0", help="Seeds for random and k-means ('0,1,2'); other methods are deterministic."),
    max_per_task: int = typer.Option(0, help="At most N test queries per task, a seeded sample (0 = all)."),
    split: str = typer.Option("test", help="Which records to evaluate on."),
    model: str = typer.Option(DEFAULT_LLM, help=MODEL_HELP),
    backend: str = typer.Option("hf", help="LLM backend."),
    dtype: str = typer.Option("auto", help=DTYPE_HELP),
    batch_tokens: int = typer.Option(8192, help="hf backend: token budget of one forward pass."),
    budget_tokens: int = typer.Option(1024, help="Prompt budget in tokens; the least similar examples go first."),
    resamples: int = typer.Option(1000, help="Paired bootstrap resamples for the confidence intervals."),
    encoder_runtime: str = typer.Option("torch", help=RUNTIME_HELP + " For the dense selectors."),
    query_max_length: int = typer.Option(None, help=QUERY_CAP_HELP),
    diversity: float = typer.Option(
        None, min=0, max=1, help="bm25, dense, retrievers: re-pick by MMR from the top max(40, 4k) (0: similarity)."
    ),
    balance_labels: bool = typer.Option(
        False, "--balance-labels", help="bm25, dense, retrievers: alternate the candidates' answers."
    ),
    placement: Placement = None,  # type: ignore[assignment]  # its options: @placement_options
) -> None:
    """Evaluate selectors by the LLM's in-context score on each task; write tables, plots, explanations."""
    specs = [m.strip() for m in methods.split(",") if m.strip()]
    chosen = options_as(  # the study's rule for each option, checked before anything loads
        EvalSection,
        methods=specs,
        k=_ints(k, "--k"),
        seeds=_ints(seeds, "--seeds") or [0],
        max_per_task=max_per_task,
        budget_tokens=budget_tokens or None,
        resamples=resamples,
        encoder_runtime=encoder_runtime,
        query_max_length=query_max_length,
    )
    for spec in specs:
        check_method(spec)
    ks, seed_list = chosen.k, chosen.seeds
    folder = DataDir(data)
    passages = list(folder.passages())
    records = select_records(list(folder.records(split)), tasks, max_per_task, seed=0)
    if not records:
        raise typer.BadParameter(f"no {split} records for tasks {tasks!r} in {data}", param_hint="--tasks")
    options = backend_options(backend, dtype, batch_tokens)
    runner = make_engine(placement, model, backend, options)
    settings = EvalSettings(
        budget_tokens=chosen.budget_tokens,
        encoder_runtime=chosen.encoder_runtime,
        query_max_length=chosen.query_max_length,
        diversity=diversity,
        balance_labels=balance_labels,
    )
    cache = OutcomeCache(out / "cache.sqlite")
    try:  # its errors name what they are about (a cache file, a method): not all are --methods'
        runs, _ = evaluate_methods(runner, specs, passages, records, ks, seed_list, cache, settings, out / "index")
    finally:
        cache.close()
        runner.close()
    results = write_report(runs, out, resamples)
    write_manifest(
        out / "manifest.json",
        "eval",
        {
            "methods": specs,
            "k": ks,
            "seeds": seed_list,
            "max_per_task": max_per_task,
            "split": split,
            "llm": runner.fingerprint,
            "budget_tokens": budget_tokens,
            "encoder_runtime": chosen.encoder_runtime,
            "query_max_length": chosen.query_max_length,
            "tasks": tasks,
            "diversity": diversity,
            "balance_labels": balance_labels,
        },
        inputs={name: file_fingerprint(folder.path(name)) for name in ("passages", split)},
        outputs=[out / "results.json", out / "results.md"],
    )
    console.print((out / "results.md").read_text())
    page = write_html_report(out)
    console.print(
        f"report -> {out} ({page.name}, results.json, results.md, {', '.join(results['plots'])}, explanations.jsonl.gz)"
    )
