"""The pipeline's stages: each reads the folders of the stages before it, writes into its own folder,
and returns a small report (counts, agreement on held-back queries) for the run's manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmr.data.build import BuildConfig, build, select_records
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl, write_jsonl
from llmr.data.schema import CandidateList
from llmr.data.sources import SPLITS, RowSource, open_source
from llmr.llm.base import LLM
from llmr.pipeline.config import DataSection, PipelineConfig
from llmr.tasks import Task, resolve_tasks
from llmr.training.agreement import agreement, retriever_similarities
from llmr.training.retriever import RetrieverConfig, train_retriever

CANDIDATES_FILE = "candidates.jsonl.gz"
SCORES_FILE = "scores.jsonl.gz"
TEACHER_FILE = "teacher.jsonl.gz"

IsTrain = Callable[[CandidateList], bool]


def resolve_data(section: DataSection) -> tuple[RowSource, list[Task], dict[str, str]]:
    """The row source, the chosen tasks, and the fingerprint of every source file (part of the data key)."""
    source = open_source(section.source)
    tasks = resolve_tasks(section.tasks, available=source.available())
    prints = {f"{t.name}/{s}": source.fingerprint(t, s) for t in tasks for s in SPLITS if source.has(t, s)}
    return source, tasks, prints


def build_data(source: RowSource, tasks: list[Task], cfg: PipelineConfig, path: Path) -> dict[str, Any]:
    config = BuildConfig(
        tasks=tuple(t.name for t in tasks),
        source=source.describe(),
        max_train=cfg.data.max_train,
        max_test=cfg.data.max_test,
        max_pool=cfg.data.max_pool,
        seed=cfg.seed,
    )
    counts = build(source, tasks, path, config)
    return {"tasks": len(counts), **{k: sum(c[k] for c in counts.values()) for k in ("pool", "train", "test")}}


def mine(
    data_dir: Path, retriever: str, cfg: PipelineConfig, path: Path, index_dir: Path | None = None
) -> dict[str, Any]:
    """Candidates for (a per-task sample of) the training queries, from BM25 or the last retriever."""
    from llmr.candidates import load_retriever, mine_to_file

    data = DataDir(data_dir)
    passages = list(data.passages())
    records = select_records(list(data.records("train")), None, cfg.candidates.max_per_task, cfg.seed)
    index = load_retriever(retriever, passages, index_dir=index_dir)
    count = mine_to_file(
        records, passages, index, path / CANDIDATES_FILE, top_n=cfg.candidates.top_n, scope=cfg.candidates.scope
    )
    return {"queries": count, "retriever": "bm25" if retriever == "bm25" else "dense"}


def score(
    data_dir: Path, candidates_dir: Path, llm: LLM, cache: Path | str | None, cfg: PipelineConfig, path: Path
) -> dict[str, Any]:
    from llmr.llm.models import cache_dir
    from llmr.scoring.cache import ScoreCache
    from llmr.scoring.feedback import make_jobs, score_to_file

    passages = {p.id: p for p in DataDir(data_dir).passages()}
    jobs = make_jobs(read_jsonl(candidates_dir / CANDIDATES_FILE, CandidateList), passages, cfg.scoring)
    store = ScoreCache(cache or cache_dir() / "scores.sqlite")
    try:
        return {"llm": llm.fingerprint, **score_to_file(jobs, llm, store, cfg.scoring, path / SCORES_FILE)}
    finally:
        store.close()


def reward(data_dir: Path, scores_dir: Path, cfg: PipelineConfig, is_train: IsTrain, path: Path) -> dict[str, Any]:
    """Train the reward model on the training queries, then score every candidate of every query."""
    from llmr.progress import progress_bar
    from llmr.training.reward import teacher_scores, train_reward_model

    passages = {p.id: p for p in DataDir(data_dir).passages()}
    scored = list(read_jsonl(scores_dir / SCORES_FILE, CandidateList))
    train = [c for c in scored if is_train(c)]
    train_reward_model(train, passages, path, cfg.reward)
    with progress_bar("queries") as bar:
        task = bar.add_task("teacher scores", total=len(scored))
        teacher = teacher_scores(path, scored, passages, on_query=lambda n: bar.advance(task, n))
    write_jsonl(path / TEACHER_FILE, teacher)
    held = [c for c in scored if not is_train(c)]
    by_id = {c.query_id: c.doc_scores for c in teacher}
    return {"train_queries": len(train), "held_back_queries": len(held), "agreement_with_llm": agreement(held, by_id)}


def retriever(
    data_dir: Path, train_file: Path, teacher_file: Path, config: RetrieverConfig, is_train: IsTrain, path: Path
) -> dict[str, Any]:
    """Train the bi-encoder on `train_file`'s training queries (teacher scores, or LLM scores for EPR);
    report how often it (and the encoder it started from) orders held-back queries' candidates as the
    reward model (`teacher_file`) does."""
    passages = {p.id: p for p in DataDir(data_dir).passages()}
    train = [c for c in read_jsonl(train_file, CandidateList) if is_train(c)]
    train_retriever(train, passages, path, config)
    report: dict[str, Any] = {"train_queries": len(train)}
    held = [c for c in read_jsonl(teacher_file, CandidateList) if not is_train(c)]
    if held:
        report["initial_agreement_with_reward"] = agreement(held, retriever_similarities(config.model, held, passages))
        report["agreement_with_reward"] = agreement(held, retriever_similarities(str(path), held, passages))
    return report
