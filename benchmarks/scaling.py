"""Scaling out on one machine: LLM scoring pairs/s in one process vs on 1 and 2 Ray workers.

    python benchmarks/scaling.py --pairs 256          # prints a markdown table

The same real LLM-R feedback pairs (see benchmarks/scoring.py) go through `Engine.map` in the same
length-sorted chunks that `llmr score` commits, with the default LLM (Gemma-3-270M, fp32 on CPU):
- local:   this process, torch on every core;
- ray x1:  one Ray actor holding every core;
- ray x2:  two actors, one core each (the layout `--engine ray` picks by default).
Startup (cluster + model load in each actor) is reported apart from scoring. The last column is the
largest difference of a score from the local run's (thread counts change float rounding only).
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial

from scoring import make_pairs

from llmr.distributed.engine import LocalEngine, RayEngine
from llmr.llm import DEFAULT_LLM, load_llm
from llmr.scoring.cache import pair_key
from llmr.scoring.feedback import chunks, score_chunk


def run(engine, work: list[tuple[list[str], list[str]]]) -> tuple[float, int, list[float]]:
    list(engine.map(score_chunk, work[:2]))  # warm-up: first calls pay for allocation
    start, tokens, scores = time.perf_counter(), 0, {}
    for i, (chunk_scores, chunk_tokens) in engine.map(score_chunk, work):
        scores[i] = [s.mean for s in chunk_scores]
        tokens += chunk_tokens
    return time.perf_counter() - start, tokens, [s for i in sorted(scores) for s in scores[i]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=32, help="pairs per chunk (a unit of work for one worker)")
    parser.add_argument("--model", default=DEFAULT_LLM)
    parser.add_argument("--shared", default="../shared/data/llmr-tasks")
    args = parser.parse_args()

    pairs = make_pairs(args.pairs, 0, args.shared)
    keyed = {pair_key(*p): p for p in pairs}
    work = [([keyed[k][0] for k in keys], [keyed[k][1] for k in keys]) for keys in chunks(keyed, args.chunk)]
    cores = os.cpu_count() or 1
    factory = partial(load_llm, args.model, "hf", dtype="fp32")

    rows, reference = [], None
    for name, workers in (("local", 0), ("ray x1", 1), (f"ray x{cores}", cores)):
        start = time.perf_counter()
        if workers:
            engine = RayEngine(factory, workers=workers, cpus_per_worker=cores / workers, num_cpus=cores)
        else:
            engine = LocalEngine(factory())
        startup = time.perf_counter() - start
        seconds, tokens, scores = run(engine, work)
        engine.close()
        reference = reference or scores
        diff = max(abs(a - b) for a, b in zip(scores, reference, strict=True))
        rows.append(
            (name, workers or 1, cores // max(workers, 1), startup, len(pairs) / seconds, tokens / seconds, diff)
        )

    base = rows[0][4]
    print(f"\n{len(pairs)} pairs in {len(work)} chunks of {args.chunk}, {args.model} fp32, {cores} cores\n")
    print("| engine | workers | threads/worker | startup s | pairs/s | tokens/s | vs local | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for name, workers, threads, startup, rate, tok_rate, diff in rows:
        print(
            f"| {name} | {workers} | {threads} | {startup:.1f} | {rate:.2f} | {tok_rate:,.0f} | "
            f"{rate / base:.2f}x | {diff:.1e} |"
        )


if __name__ == "__main__":
    main()
