"""`llmr demo`: the main job on the embedded defaults (grows with each stage).

Now: build the data files for four tasks, mine BM25 candidates for one test query, show the LLM's
feedback on each — log p(answer | example, query) — and the one-shot prediction.
"""

from __future__ import annotations

import random
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from llmr.candidates import BM25Retriever, mine_candidates
from llmr.data.build import BuildConfig, build
from llmr.data.directory import DataDir
from llmr.data.schema import answer_text
from llmr.data.sources import open_source
from llmr.evaluation.inference import predict
from llmr.evaluation.metrics import example_scores
from llmr.llm import DEFAULT_LLM, load_llm
from llmr.prompt import build_prompt
from llmr.tasks import get_task, resolve_tasks

DEMO_TASKS = "sst2,ag_news,copa,natural_questions"
console = Console()


def demo(
    out: Path = typer.Option(Path("runs/demo"), help="Folder for the demo's data files."),
    source: str = typer.Option(
        "auto", help="'auto' (../shared data if found, else llmr's sample rows), or as in `llmr data build`."
    ),
    task: str = typer.Option("sst2", help="Task of the query to show."),
    candidates: int = typer.Option(6, help="BM25 candidate examples to score."),
    model: str = typer.Option(DEFAULT_LLM, help="LLM to score with."),
    seed: int = typer.Option(0, help="Seed for picking the query and candidates."),
) -> None:
    """Build data for four tasks and print one query's candidates scored by the LLM."""
    row_source = open_source(source)
    config = BuildConfig(
        tasks=tuple(DEMO_TASKS.split(",")), source=row_source.describe(), max_train=2000, max_test=50, seed=seed
    )
    counts = build(row_source, resolve_tasks(DEMO_TASKS), out / "data", config)
    console.print(
        f"[bold]data[/] from {row_source.describe()} -> {out / 'data'}: "
        + ", ".join(f"{t} {c['pool']}/{c['train']}/{c['test']}" for t, c in counts.items())
        + " (pool/train/test)"
    )

    data = DataDir(out / "data")
    rng = random.Random(seed)
    query = rng.choice([r for r in data.records("test") if r.task_name == task])
    task_pool = [p for p in data.passages() if p.task_name == task]
    (mined,) = mine_candidates([query], task_pool, BM25Retriever(task_pool), top_n=candidates, scope="task")
    by_id = {p.id: p for p in task_pool}
    pool = [by_id[d] for d in mined.doc_ids]
    spec = get_task(task)
    answer = answer_text(query)

    with console.status(f"loading {model}"):
        llm = load_llm(model)
    scores = llm.score([build_prompt([p.contents], query.query) for p in pool], [answer] * len(pool))
    zero = llm.score([build_prompt([], query.query)], [answer])[0]

    console.print(f"\n[bold]query[/] ({task}): {query.query}\n[bold]answer[/]: {answer}")
    table = Table(title=f"LLM feedback: mean log p(answer | example, query) with {llm.fingerprint}")
    table.add_column("rank", justify="right")
    table.add_column("candidate example (pool item)")
    table.add_column("score", justify="right")
    ranked = sorted(zip(pool, scores, strict=True), key=lambda ps: -ps[1].mean)
    for i, (p, s) in enumerate(ranked, start=1):
        text, _, label = p.contents.rpartition("\n")
        table.add_row(str(i), f"{text[:80]}{'…' if len(text) > 80 else ''} [bold]→ {label}[/]", f"{s.mean:.3f}")
    table.add_row("-", "(no example: zero-shot)", f"{zero.mean:.3f}")
    console.print(table)

    best = ranked[0][0]
    prompt = build_prompt([best.contents], query.query)
    prediction = predict(llm, spec, [query], [prompt])[0]  # as `llmr eval` predicts
    verdict = "[green]correct[/]" if example_scores(spec, prediction, query.answers)["score"] == 1 else "[red]wrong[/]"
    console.print(
        f"\n[bold]one-shot prompt with the best example[/]:\n{prompt}[bold]prediction[/]: {prediction} ({verdict})"
    )
