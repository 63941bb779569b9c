"""What a pipeline run will do and roughly how long it takes, before it starts (`llmr pipeline --plan`).

Counts come from the config and the data source (the training rows per task, capped as the config caps
them); times from per-unit rates measured with the embedded models on 2 CPU cores with AVX-512 BF16
(the 25-task study, benchmarks/RESULTS.md), doubled on a CPU without it (fp32). An estimate to size a
run, not a promise: a GPU is much faster, and finished stages are skipped when a run resumes.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass

from llmr.base.encoders import cpu_has_bf16
from llmr.data.sources import DirectorySource, RowSource
from llmr.pipeline.config import PipelineConfig
from llmr.pipeline.stages import resolve_data
from llmr.tasks import TASKS, Task

RATES = {  # units per second (2 cores with AVX-512 BF16; the study's stage timings)
    "candidates": 1200.0,  # BM25 queries
    "dense": 150.0,  # texts encoded by the retriever (iteration >= 2 mines with it)
    "score": 4.2,  # LLM pairs (Gemma-3-270M)
    "reward": 25.0,  # cross-encoder pairs trained (groups x epochs)
    "teacher": 128.0,  # cross-encoder pairs scored
    "retriever": 20.0,  # candidate lists trained (per epoch): 0.75 s a step of 16 (benchmarks/training_speed.py)
}
CONFIRM_ABOVE_S = 3600  # a longer run is shown and confirmed (or --yes) before it starts


@dataclass(frozen=True)
class PlannedStage:
    name: str
    work: str  # in words: "2,299 LLM pairs"
    seconds: float


def train_rows(source: RowSource, tasks: list[Task], cap: int | None) -> dict[str, int]:
    """Training queries per task: counted in a task folder's train file, else (the hub) the cap."""
    counts = {}
    for task in tasks:
        path = source.file(task, "train") if isinstance(source, DirectorySource) else None
        if path is None:
            counts[task.name] = cap or 0
            continue
        with gzip.open(path, "rt") if path.suffix == ".gz" else open(path) as fh:
            n = sum(1 for line in fh if line.strip())
        counts[task.name] = min(n, cap) if cap else n
    return counts


def plan(cfg: PipelineConfig, rows: dict[str, int] | None = None) -> list[PlannedStage]:
    """The stages of a run of `cfg` (training rows per task from its data source unless given)."""
    if rows is None:
        source, tasks, _ = resolve_data(cfg.data)
        unseen = cfg.candidates.unseen()
        rows = train_rows(source, [t for t in tasks if not t.held_out and t.name not in unseen], cfg.data.max_train)
    cap = cfg.candidates.max_per_task
    mined = sum(min(n, cap) if cap else n for n in rows.values())
    distilled = sum(min(n, cap) if cap else n for t, n in rows.items() if TASKS[t].mode in cfg.distill.modes)
    scored_cap = cfg.scoring.max_per_task
    scored = sum(min(n, cap or n, scored_cap or n) for n in rows.values())

    def scored_in(modes: set[str]) -> int:  # the LLM-scored queries of these modes' tasks
        return sum(min(n, cap or n, scored_cap or n) for t, n in rows.items() if TASKS[t].mode in modes)

    if cfg.distill.teacher == "llm":  # the LLM's scored queries are the only teacher lists
        distilled = scored_in(set(cfg.distill.modes))
    elif cfg.distill.teacher == "llm+penalties":  # and those of the other modes join the labels' lists
        distilled += scored_in(set(cfg.distill.llm_modes) - set(cfg.distill.modes))
    slow = 1.0 if cpu_has_bf16() else 2.0
    kept = 1 - cfg.validation_fraction
    out = [PlannedStage("data", f"{sum(rows.values()):,} training rows, {len(rows)} tasks", 10.0)]
    lists = 0
    for it in range(1, cfg.iterations + 1):
        pairs = scored * cfg.scoring.n_candidates
        reward = scored * kept * cfg.reward.epochs * (cfg.reward.groups.n_negatives + 1)
        teacher = distilled * cfg.distill.top_n
        lists = lists + distilled if cfg.distill.union else distilled
        mining = mined / RATES["candidates"] if it == 1 else (mined + sum(rows.values())) / RATES["dense"]
        out.append(PlannedStage(f"iteration-{it}/candidates", f"{mined:,} queries", mining))
        if cfg.scores_with_llm(it):
            out.append(PlannedStage(f"iteration-{it}/score", f"≤{pairs:,} LLM pairs", slow * pairs / RATES["score"]))
            if cfg.uses_reward:
                seconds = slow * reward / RATES["reward"]
                out.append(PlannedStage(f"iteration-{it}/reward", f"{reward:,.0f} pairs trained", seconds))
        if cfg.uses_reward:
            out.append(PlannedStage(f"iteration-{it}/teacher", f"{teacher:,} pairs", slow * teacher / RATES["teacher"]))
        else:  # labels only, or the LLM's own scores: no model runs
            what = {"llm": "the LLM's scores", "llm+penalties": "the LLM's scores and labels"}.get(
                cfg.distill.teacher, "labels only"
            )
            out.append(PlannedStage(f"iteration-{it}/teacher", f"{teacher:,} pairs, {what}", 1.0))
        out += [
            PlannedStage(
                f"iteration-{it}/retriever",
                f"{lists:,} lists x {cfg.retriever.epochs} epochs",
                slow * lists * cfg.retriever.epochs / RATES["retriever"],
            ),
        ]
    return out
