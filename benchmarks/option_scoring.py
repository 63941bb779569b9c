"""In-context inference cost: scoring each (prompt, option) pair vs one prompt pass shared by its options.

Real k-shot prompts (BM25 examples from ../shared/data) for classification and multiple-choice test
queries, scored with the embedded Gemma-3-270M both ways in one run; prints a markdown table.

    python benchmarks/option_scoring.py --queries 48 --k 4

pairwise: `LLM.score_options` of the base class (every option re-reads its prompt);
shared:   `HFCausalLM.score_options` (the prompt runs once; each option continues a copy of its KV cache).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

TASKS = "sst2,rte,ag_news,copa,arc_e,winogrande"


def make_prompts(shared: Path, n: int, k: int, llm) -> tuple[list[str], list[list[str]]]:
    import tempfile

    from llmr.data.build import BuildConfig, build, select_records
    from llmr.data.directory import DataDir
    from llmr.data.sources import DirectorySource
    from llmr.evaluation import make_selector
    from llmr.prompt import build_prompt, examples_within_budget
    from llmr.tasks import get_task, resolve_tasks

    with tempfile.TemporaryDirectory() as tmp:
        tasks = resolve_tasks(TASKS)
        build(DirectorySource(shared), tasks, tmp, BuildConfig(tuple(t.name for t in tasks), str(shared), seed=0))
        data = DataDir(tmp)
        pool = list(data.passages())
        records = select_records(list(data.records("test")), None, n // len(tasks) + 1, 0)[:n]
    chosen = make_selector("bm25", pool).select_many(records, k)
    prompts, options = [], []
    for record, examples in zip(records, chosen, strict=True):
        texts = [e.passage.contents for e in examples]
        m = examples_within_budget(texts, record.query, 1024, llm.count_tokens)
        prompts.append(build_prompt(texts[:m][::-1], record.query))
        task = get_task(record.task_name)
        options.append(list(task.label_words) if task.mode == "cls" else record.options)
    return prompts, options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=48)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/llmr-tasks")
    args = parser.parse_args()

    from llmr.llm import load_llm
    from llmr.llm.base import LLM

    llm = load_llm("gemma-3-270m")
    prompts, options = make_prompts(args.shared, args.queries, args.k, llm)
    n_pairs = sum(len(o) for o in options)
    llm.score_options(prompts[:4], options[:4])  # warm-up
    rows, results = [], {}
    for name, fn in (
        ("pairwise", lambda: LLM.score_options(llm, prompts, options)),
        ("shared", lambda: llm.score_options(prompts, options)),
    ):
        start = time.perf_counter()
        results[name] = fn()
        seconds = time.perf_counter() - start
        rows.append((name, seconds))
    diff = max(
        abs(a.logprob - b.logprob)
        for x, y in zip(results["pairwise"], results["shared"], strict=True)
        for a, b in zip(x, y, strict=True)
    )
    tokens = sum(llm.count_tokens(prompts))
    print(f"{len(prompts)} prompts (k={args.k}, {tokens:,} prompt tokens), {n_pairs} options, {llm.fingerprint}\n")
    print("| scorer | seconds | queries/s | options/s |")
    print("|---|---:|---:|---:|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {len(prompts) / seconds:.2f} | {n_pairs / seconds:.2f} |")
    print(f"| **shared / pairwise speed** | **{rows[0][1] / rows[1][1]:.2f}×** | | |")
    print(f"\nmax |log-prob difference|: {diff:.2e} nats")


if __name__ == "__main__":
    main()
