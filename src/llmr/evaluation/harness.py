"""`llmr eval`: methods x tasks x k x seeds, each query's outcome cached by what produced it.

An outcome's key hashes the LLM's fingerprint, the selector's fingerprint (its pool, encoder weights,
seed), k, the prompt budget and the query itself. Outcomes are committed to SQLite chunk by chunk: a
killed evaluation resumes where it stopped, and adding a method or a task runs only what is new.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmr.base.manifest import config_hash
from llmr.base.progress import progress_bar
from llmr.base.runtime import Runtime
from llmr.base.store import Store
from llmr.data.schema import Passage, Record
from llmr.distributed.engine import Engine, as_engine
from llmr.evaluation.inference import best, option_loglikelihoods, predict
from llmr.evaluation.metrics import example_scores
from llmr.evaluation.rerank import make_method
from llmr.evaluation.selectors import Example, SelectionMethod, with_options
from llmr.llm.base import LLM
from llmr.prompt import build_prompt, examples_within_budget
from llmr.tasks import TASKS

EVAL_VERSION = 1  # bump when prompts or inference change what an outcome is


@dataclass(frozen=True)
class EvalSettings:
    budget_tokens: int | None = 1024  # prompt tokens (examples + query); the paper's LLaMA input limit
    max_new_tokens: int = 64
    chunk: int = 16  # queries per committed chunk
    encoder_runtime: Runtime = "torch"  # of the dense selectors (the pool and each query)
    query_max_length: int | None = None  # their queries' token cap (onnx/openvino); None: the encoder's own limit
    diversity: float | None = None  # bm25, dense, retrievers: MMR over the top max(40, 4k) (0-1; None: off)
    balance_labels: bool = False  # the same: round-robin over the candidates' answers


class OutcomeCache(Store):
    """Outcome key -> outcome (a JSON object), committed chunk by chunk."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, "outcomes")


def outcome_key(llm_fingerprint: str, selector: SelectionMethod, k: int, settings: EvalSettings, record: Record) -> str:
    return config_hash(
        {
            "version": EVAL_VERSION,
            "llm": llm_fingerprint,
            "selector": selector.fingerprint,
            "k": k,
            "budget": settings.budget_tokens,
            "max_new_tokens": settings.max_new_tokens,
            "record": record.model_dump(),
        }
    )


def answer(llm: LLM, batch: tuple[Sequence[Record], Sequence[Sequence[Example]], EvalSettings]) -> list[dict[str, Any]]:
    """Prompt, predict and score one batch of queries of one task, given each query's selected examples."""
    records, chosen, settings = batch
    task = TASKS[records[0].task_name]
    prompts, shown = [], []
    for record, examples in zip(records, chosen, strict=True):
        texts = [e.passage.contents for e in examples]
        n = examples_within_budget(texts, record.query, settings.budget_tokens, llm.count_tokens)
        prompts.append(build_prompt(texts[:n][::-1], record.query))
        shown.append(examples[:n][::-1])  # prompt order: the most similar last
    if task.mode == "gen":
        options: list[dict | None] = [None] * len(records)
        predictions = predict(llm, task, records, prompts, settings.max_new_tokens)
    else:
        scored = option_loglikelihoods(llm, task, records, prompts)
        options, predictions = list(scored), [best(o) for o in scored]
    return [
        {
            "task": task.name,
            "query_id": record.query_id,
            "query": record.query,
            "examples": [
                {"id": e.passage.id, "task": e.passage.task_name, "score": e.score, "contents": e.passage.contents}
                for e in examples
            ],
            "prompt": prompt,
            "prediction": prediction,
            "options": option_scores,  # each answer's log-likelihood (cls, mc); None for generation
            "gold": record.answers[0],
            "answers": record.answers,
            "choices": record.options if task.mode == "mc" else None,  # the options' texts, for the report
            **example_scores(task, prediction, record.answers),
        }
        for record, examples, prompt, prediction, option_scores in zip(
            records, shown, prompts, predictions, options, strict=True
        )
    ]


def evaluate(
    llm: LLM | Engine,
    selector: SelectionMethod,
    records: Sequence[Record],
    k: int,
    cache: OutcomeCache,
    settings: EvalSettings = EvalSettings(),
    on_chunk: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Outcomes of one selector at one k for every record (input order), computing only uncached ones.

    Examples are selected here, chunk by chunk; `answer` runs where the engine puts it (in this process,
    or on Ray actors while the next chunks are being selected). Each chunk is committed as it arrives.
    """
    engine = as_engine(llm)
    keys = [outcome_key(engine.fingerprint, selector, k, settings, r) for r in records]
    done = cache.get_many(keys)
    todo: dict[str, list[int]] = defaultdict(list)
    for i, key in enumerate(keys):
        if key not in done:
            todo[records[i].task_name].append(i)
    if on_chunk and len(done):
        on_chunk(len(done))
    parts = [
        indices[s : s + settings.chunk] for indices in todo.values() for s in range(0, len(indices), settings.chunk)
    ]

    def batches() -> Iterator[tuple[list[Record], list[list[Example]], EvalSettings]]:
        for part in parts:
            chunk = [records[i] for i in part]
            yield chunk, selector.select_many(chunk, k), settings

    for n, outcomes in engine.map(answer, batches()):
        cache.put_many((keys[i], o) for i, o in zip(parts[n], outcomes, strict=True))
        done.update((keys[i], o) for i, o in zip(parts[n], outcomes, strict=True))
        if on_chunk:
            on_chunk(len(parts[n]))
    return [done[key] for key in keys]


SEEDED = ("random", "kmeans")  # the only selectors whose choices depend on the seed


def evaluate_methods(
    llm: LLM | Engine,
    specs: Sequence[str],
    passages: Sequence[Passage],
    records: Sequence[Record],
    ks: Sequence[int],
    seeds: Sequence[int],
    cache: OutcomeCache,
    settings: EvalSettings = EvalSettings(),
    index_dir: Path | None = None,
) -> tuple[dict[tuple[str, int, int], list[dict[str, Any]]], dict[str, float]]:
    """Every method spec (see `make_selector`) at every k and seed, with a progress bar.

    Returns the runs for `write_report`, keyed (method name, k, seed), and the seconds each method
    took in this call (near zero when its outcomes were cached).
    """
    from rich.console import Console

    engine = as_engine(llm)
    names = [spec.split(":", 1)[0] for spec in specs]
    if len(set(names)) < len(names):
        raise ValueError(f"methods need distinct names (the part before ':'): {', '.join(specs)}")
    runs: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    seconds: dict[str, float] = {}
    with progress_bar("queries") as bar:
        for spec in specs:
            name = spec.split(":", 1)[0]
            start = time.perf_counter()
            for seed in seeds if name in SEEDED else seeds[:1]:
                with Console(stderr=True).status(f"preparing {spec}"):
                    runtime, cap = settings.encoder_runtime, settings.query_max_length
                    selector = make_method(spec, passages, engine, seed, index_dir, runtime, cap)
                    selector = with_options(selector, settings.diversity, settings.balance_labels)
                for k in ks:
                    task = bar.add_task(f"{name} k={k} seed={seed}", total=len(records))
                    outcomes = evaluate(
                        engine, selector, records, k, cache, settings, on_chunk=lambda n, t=task: bar.advance(t, n)
                    )
                    for s in seeds if name not in SEEDED else [seed]:
                        runs[name, k, s] = outcomes  # deterministic methods: the same outcomes for every seed
            seconds[name] = time.perf_counter() - start
    return runs, seconds
