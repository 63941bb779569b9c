"""The pipeline's stages: each reads the folders of the stages before it, writes into its own folder,
and returns a small report (counts, agreement on held-back queries) for the run's manifest."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmr.base.files import cache_dir
from llmr.base.progress import progress_bar
from llmr.candidates import load_retriever, mine_to_file
from llmr.data.build import BuildConfig, build, select_records
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl, write_jsonl
from llmr.data.schema import CandidateList
from llmr.data.sources import SPLITS, RowSource, open_source
from llmr.distributed.engine import Engine
from llmr.llm.base import LLM
from llmr.pipeline.config import DataSection, DistillSection, PipelineConfig
from llmr.scoring.cache import ScoreCache
from llmr.scoring.feedback import make_jobs, score_to_file
from llmr.tasks import TASKS, Task, resolve_tasks
from llmr.training.agreement import agreement, kept_above_penalized, retriever_similarities
from llmr.training.retriever import RetrieverConfig, epr_config, train_retriever
from llmr.training.reward import train_reward_model
from llmr.training.teacher import teacher_scores

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
    """Candidates for (a per-task sample of) the training queries, from BM25 or the last retriever; the
    held-out tasks' queries are left out."""
    data = DataDir(data_dir)
    passages = list(data.passages())
    unseen = cfg.candidates.unseen()
    train = [r for r in data.records("train") if r.task_name not in unseen]
    records = select_records(train, None, cfg.candidates.max_per_task, cfg.seed)
    index = load_retriever(retriever, passages, index_dir=index_dir, runtime=cfg.encoder_runtime)
    count = mine_to_file(
        records, passages, index, path / CANDIDATES_FILE, top_n=cfg.candidates.top_n, scope=cfg.candidates.scope
    )
    return {"queries": count, "retriever": "bm25" if retriever == "bm25" else "dense"}


def score(
    data_dir: Path, candidates_dir: Path, llm: LLM | Engine, cache: Path | str | None, cfg: PipelineConfig, path: Path
) -> dict[str, Any]:
    """The LLM scores `scoring.max_per_task` of each task's mined queries (nested in the mined sample)."""
    passages = {p.id: p for p in DataDir(data_dir).passages()}
    jobs = make_jobs(read_jsonl(candidates_dir / CANDIDATES_FILE, CandidateList), passages, cfg.scoring)
    store = ScoreCache(cache or cache_dir() / "scores.sqlite")
    try:
        return {"llm": llm.fingerprint, **score_to_file(jobs, llm, store, cfg.scoring, path / SCORES_FILE)}
    finally:
        store.close()


def reward(data_dir: Path, scores_dir: Path, cfg: PipelineConfig, is_train: IsTrain, path: Path) -> dict[str, Any]:
    """Train the reward model on the LLM-scored training queries; report how often it orders held-back
    queries' candidates as the LLM does (over non-penalized candidates, and over all of them)."""
    passages = {p.id: p for p in DataDir(data_dir).passages()}
    scored = list(read_jsonl(scores_dir / SCORES_FILE, CandidateList))
    train = [c for c in scored if is_train(c)]
    train_reward_model(train, passages, path, cfg.reward)
    held = [c for c in scored if not is_train(c)]
    report: dict[str, Any] = {"train_queries": len(train), "held_back_queries": len(held)}
    if held:
        predicted, _ = teacher_scores(held, passages, "reward", path)
        by_id = {c.query_id: c.doc_scores for c in predicted}
        report["agreement_with_llm"] = agreement(held, by_id)
        report["agreement_with_llm_all"] = agreement(held, by_id, include_penalized=True)
        report["kept_above_penalized"] = kept_above_penalized(held, by_id)
    return report


def teacher_settings(cfg: PipelineConfig) -> dict[str, Any]:
    """What the teacher's scores depend on: its key in the pipeline, its manifest under `llmr train teacher`.
    Settings added later add nothing at their defaults, so older stages still count as done."""
    default = DistillSection().model_dump()
    distill = {
        k: v
        for k, v in cfg.distill.model_dump(exclude={"union"}).items()
        if k not in ("modes", "llm_modes") or v != default[k]
    }
    penalties = {k: v for k, v in asdict(cfg.scoring).items() if k.startswith("penalize")}
    runtime = {} if cfg.encoder_runtime == "torch" else {"encoder_runtime": cfg.encoder_runtime}
    return {"distill": distill, "penalties": penalties, **runtime}


def teacher(
    data_dir: Path,
    candidates_file: Path,
    reward_dir: Path | None,
    cfg: PipelineConfig,
    cache: Path | str | None,
    out: Path,
    llm_scores: Path | None = None,
) -> dict[str, Any]:
    """The teacher (`distill.teacher`, with `scoring`'s penalties, in `encoder_runtime`) scores the first
    `distill.top_n` candidates of every list in `candidates_file` (train and held back) of the tasks in
    `distill.modes`, into the file `out`; the pipeline's stage and `llmr train teacher` both run this.
    `llm_scores`: the LLM's scored lists (`llmr score`), which the llm teachers distil."""
    teacher_name = cfg.distill.teacher
    if teacher_name.startswith("llm") and llm_scores is None:
        raise ValueError(f"teacher {teacher_name!r} needs the LLM's scored lists (`llmr score`)")
    passages = {p.id: p for p in DataDir(data_dir).passages()}
    mined = read_jsonl(llm_scores if teacher_name == "llm" else candidates_file, CandidateList)
    mined = [c for c in mined if TASKS[c.task_name].mode in cfg.distill.modes]
    llm_lists = (
        [c for c in read_jsonl(llm_scores, CandidateList) if TASKS[c.task_name].mode in cfg.distill.llm_modes]
        if teacher_name == "llm+penalties"
        else []
    )
    store = ScoreCache(cache or cache_dir() / "scores.sqlite")
    started = time.perf_counter()
    try:
        with progress_bar("pairs") as bar:
            task = bar.add_task("teacher scores", total=None)
            scored, stats = teacher_scores(
                mined,
                passages,
                teacher_name,
                reward_dir,
                top_n=cfg.distill.top_n,
                penalties=cfg.scoring,
                cache=store,
                on_pairs=lambda n: bar.update(task, advance=n),
                runtime=cfg.encoder_runtime,
                llm_lists=llm_lists,
            )
    finally:
        store.close()
    seconds = time.perf_counter() - started
    write_jsonl(out, scored)
    rate = stats["scored"] / seconds if stats["scored"] else None
    return {"queries": len(scored), **stats, "pairs_per_s": rate}


def retriever(
    data_dir: Path,
    train_files: Sequence[Path],
    teacher_file: Path,
    config: RetrieverConfig,
    is_train: IsTrain,
    path: Path,
) -> dict[str, Any]:
    """Train the bi-encoder on the training queries of `train_files` (teacher scores, or LLM scores for
    EPR; several files: their union); report how often it (and the encoder it started from) orders
    held-back queries' candidates as the teacher (`teacher_file`) does."""
    passages = {p.id: p for p in DataDir(data_dir).passages()}
    train = [c for f in train_files for c in read_jsonl(f, CandidateList) if is_train(c)]
    train_retriever(train, passages, path, config)
    report: dict[str, Any] = {"train_lists": len(train)}
    held = [c for c in read_jsonl(teacher_file, CandidateList) if not is_train(c)]
    if held:
        report["initial_agreement_with_teacher"] = agreement(held, retriever_similarities(config.model, held, passages))
        report["agreement_with_teacher"] = agreement(held, retriever_similarities(str(path), held, passages))
    return report


def epr(
    data_dir: Path, scores_file: Path, teacher_file: Path, cfg: PipelineConfig, is_train: IsTrain, path: Path
) -> dict[str, Any]:
    """The EPR baseline: the retriever with EPR's contrastive loss on the LLM's own scores (`scores_file`), no
    reward model; agreement is measured against the teacher, as for LLM-R's retriever."""
    return retriever(data_dir, [scores_file], teacher_file, epr_config(cfg.retriever), is_train, path)
