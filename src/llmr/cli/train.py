"""`llmr train reward|retriever`: the reward model from LLM feedback, its teacher scores, the retriever.

Both run as they are under `torchrun --nproc-per-node N -m llmr.cli train ...` (DDP; gloo on CPU).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console

from llmr.base.encoders import DEFAULT_ENCODER
from llmr.base.files import file_fingerprint
from llmr.base.manifest import manifest_path, write_manifest
from llmr.base.progress import progress_bar
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl, write_jsonl
from llmr.data.schema import CandidateList
from llmr.distributed.ddp import is_main_process
from llmr.training.groups import GroupConfig
from llmr.training.retriever import RetrieverConfig, train_retriever
from llmr.training.reward import RewardConfig, train_reward_model
from llmr.training.teacher import TEACHERS, teacher_scores

app = typer.Typer(help="Train the reward model and the retriever from LLM feedback.", no_args_is_help=True)
console = Console()


@app.command("reward")
def reward(
    scores: Path = typer.Option(..., "--scores", "-s", help="LLM-scored candidate lists from `llmr score`."),
    data: Path = typer.Option(Path("runs/data"), help="Data folder with the pool (passages)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the reward model (a CrossEncoder folder)."),
    model: str = typer.Option(DEFAULT_ENCODER, help="Initial encoder: the embedded MiniLM, a folder or a hub id."),
    epochs: int = typer.Option(3, help="Epochs; each shows every query a different (rotated) group."),
    batch_size: int = typer.Option(8, help="Groups (1 positive + negatives) per step."),
    learning_rate: float = typer.Option(2e-5, help="Peak learning rate."),
    n_negatives: int = typer.Option(7, help="Negatives per group, from the LLM's bottom 16."),
    max_length: int = typer.Option(256, help="Token cap on each (query + answer, candidate) pair."),
    truncation_side: str = typer.Option("left", help="Over the cap, cut 'left' (keeps the answers) or 'right'."),
    bf16: bool = typer.Option(None, help="bf16 autocast; default: where the CPU (AVX-512 BF16/AMX) or GPU has it."),
    seed: int = typer.Option(42, help="Seed for groups and training."),
    score_all: Path = typer.Option(
        None,
        "--score-all",
        help="Also write teacher scores for the candidate lists of --candidates (default: --scores) to this file.",
    ),
    candidates_file: Path = typer.Option(
        None, "--candidates", help="Candidate lists the teacher scores (e.g. `llmr candidates` for many more queries)."
    ),
    teacher: str = typer.Option("reward", help=f"Teacher scores: {', '.join(TEACHERS)}."),
    top_n: int = typer.Option(100, help="Candidates per query the teacher scores (the first N of each list)."),
) -> None:
    """Train a cross-encoder on (query + answer, candidate) with a listwise loss over the LLM's preferences."""
    if teacher not in TEACHERS:
        raise typer.BadParameter(f"use one of {', '.join(TEACHERS)}", param_hint="--teacher")
    if truncation_side not in ("left", "right"):
        raise typer.BadParameter("use 'left' or 'right'", param_hint="--truncation-side")
    config = RewardConfig(
        model=model,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_length=max_length,
        truncation_side=truncation_side,  # type: ignore[arg-type]
        bf16=bf16,
        seed=seed,
        groups=GroupConfig(n_negatives=n_negatives, seed=seed),
    )
    passages = {p.id: p for p in DataDir(data).passages()}
    candidates = list(read_jsonl(scores, CandidateList))
    train_reward_model(candidates, passages, out, config)
    if not is_main_process():  # under torchrun, process 0 writes the manifest and the teacher scores
        return
    inputs = {"scores": file_fingerprint(scores)}
    write_manifest(
        out / "manifest.json",
        "train.reward",
        {
            "model": model,
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "n_negatives": n_negatives,
            "max_length": max_length,
            "truncation_side": truncation_side,
            "bf16": bf16,
            "seed": seed,
        },
        inputs=inputs,
        outputs=[out / "model.safetensors"],
    )
    console.print(f"reward model -> {out}")
    if score_all:
        lists = list(read_jsonl(candidates_file, CandidateList)) if candidates_file else candidates
        with progress_bar("pairs") as bar:
            task = bar.add_task("teacher scores", total=None)
            scored, _ = teacher_scores(
                lists, passages, teacher, out, top_n=top_n, on_pairs=lambda n: bar.update(task, advance=n)
            )  # type: ignore[arg-type]
        write_jsonl(score_all, scored)
        write_manifest(
            manifest_path(score_all),
            "train.reward.score_all",
            {"reward_model": str(out), "teacher": teacher, "top_n": top_n},
            inputs={**inputs, **({"candidates": file_fingerprint(candidates_file)} if candidates_file else {})},
            outputs=[score_all],
        )
        console.print(f"teacher scores for {len(scored):,} queries -> {score_all}")


@app.command("retriever")
def retriever(
    scores: Path = typer.Option(
        ...,
        "--scores",
        "-s",
        help="Teacher-scored candidate lists (`llmr train reward --score-all`), or LLM-scored ones with --teacher llm.",
    ),
    data: Path = typer.Option(Path("runs/data"), help="Data folder with the pool (passages)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the retriever (a sentence-transformers folder)."),
    teacher: str = typer.Option("reward", help="'reward': distil the reward model (LLM-R); 'llm': EPR baseline."),
    model: str = typer.Option(DEFAULT_ENCODER, help="Initial encoder: the embedded MiniLM, a folder or a hub id."),
    epochs: int = typer.Option(3, help="Epochs; each shows every query a different (rotated) group."),
    batch_size: int = typer.Option(32, help="Queries per step (their documents are each other's in-batch negatives)."),
    learning_rate: float = typer.Option(3e-5, help="Peak learning rate."),
    temperature: float = typer.Option(0.01, help="τ: similarities are cosine / τ."),
    contrastive_weight: float = typer.Option(0.2, help="Weight of the in-batch InfoNCE term (teacher reward)."),
    max_length: int = typer.Option(256, help="Token cap on queries (and pool items when both sides train)."),
    train_side: str = typer.Option(
        "both", help="'both': one encoder trained on both sides (the paper); 'query': pool embeddings fixed."
    ),
    document_max_length: int = typer.Option(256, help="With --train-side query: token cap on pool items."),
    n_negatives: int = typer.Option(3, help="Hard negatives per query, from the teacher's bottom 16."),
    same_label_negatives: bool = typer.Option(
        False, help="Keep negatives of a classification query's own task and label (the authors drop them)."
    ),
    bf16: bool = typer.Option(None, help="bf16 autocast; default: where the CPU (AVX-512 BF16/AMX) or GPU has it."),
    seed: int = typer.Option(42, help="Seed for groups and training."),
) -> None:
    """Train the bi-encoder retriever; the result loads with SentenceTransformer(path)."""
    if teacher not in ("reward", "llm"):
        raise typer.BadParameter("use 'reward' or 'llm'", param_hint="--teacher")
    if train_side not in ("both", "query"):
        raise typer.BadParameter("use 'both' or 'query'", param_hint="--train-side")
    config = RetrieverConfig(
        model=model,
        teacher=teacher,
        epochs=epochs,
        batch_size=batch_size,  # type: ignore[arg-type]
        learning_rate=learning_rate,
        temperature=temperature,
        contrastive_weight=contrastive_weight,
        max_length=max_length,
        train_side=train_side,  # type: ignore[arg-type]
        document_max_length=document_max_length,
        bf16=bf16,
        seed=seed,
        groups=GroupConfig(n_negatives=n_negatives, seed=seed, drop_same_label_negatives=not same_label_negatives),
    )
    passages = {p.id: p for p in DataDir(data).passages()}
    train_retriever(list(read_jsonl(scores, CandidateList)), passages, out, config)
    if not is_main_process():
        return
    write_manifest(
        out / "manifest.json",
        "train.retriever",
        asdict(config),
        inputs={"scores": file_fingerprint(scores)},
        outputs=[out / "model.safetensors"],
    )
    console.print(f"retriever -> {out} (loads with SentenceTransformer('{out}'))")
