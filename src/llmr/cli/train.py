"""`llmr train reward|retriever`: the reward model from LLM feedback, its teacher scores, the retriever.

Settings are the pipeline's `reward` / `retriever` sections (`cli/settings.py`): every one is an
--option, `--config` reads them from a pipeline YAML. A finished output with the same settings and
inputs is not redone (`--force` redoes it). Both run as they are under
`torchrun --nproc-per-node N -m llmr.cli train ...` (DDP; gloo on CPU).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console

from llmr.base.encoders import DEFAULT_ENCODER
from llmr.base.files import file_fingerprint
from llmr.base.manifest import is_up_to_date, manifest_path, write_manifest
from llmr.base.progress import progress_bar
from llmr.cli.settings import stage_settings
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl, write_jsonl
from llmr.data.schema import CandidateList
from llmr.distributed.ddp import is_main_process
from llmr.pipeline.config import DistillSection
from llmr.training.retriever import RetrieverConfig, train_retriever
from llmr.training.reward import RewardConfig, train_reward_model
from llmr.training.teacher import PRIORS, TEACHERS, add_prior, teacher_scores

app = typer.Typer(help="Train the reward model and the retriever from LLM feedback.", no_args_is_help=True)
console = Console()
DISTILL = DistillSection()


def _inputs(data: Path, **files: Path) -> dict[str, str]:
    return {"passages": file_fingerprint(DataDir(data).path("passages"))} | {
        name: file_fingerprint(path) for name, path in files.items()
    }


@app.command("reward")
@stage_settings("reward")
def reward(
    reward: RewardConfig,
    scores: Path = typer.Option(..., "--scores", "-s", help="LLM-scored candidate lists from `llmr score`."),
    data: Path = typer.Option(Path("runs/data"), help="Data folder with the pool (passages)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the reward model (a CrossEncoder folder)."),
    score_all: Path = typer.Option(
        None,
        "--score-all",
        help="Also write teacher scores for the candidate lists of --candidates (default: --scores) to this file.",
    ),
    candidates_file: Path = typer.Option(
        None, "--candidates", help="Candidate lists the teacher scores (e.g. `llmr candidates` for many more queries)."
    ),
    teacher: str = typer.Option(DISTILL.teacher, help=f"Teacher scores: {', '.join(TEACHERS)}."),
    top_n: int = typer.Option(DISTILL.top_n, help="Candidates per query the teacher scores (the first N of each)."),
    prior_weight: float = typer.Option(
        DISTILL.prior_weight, min=0, help=DistillSection.model_fields["prior_weight"].description
    ),
    prior: str = typer.Option(DISTILL.prior, help=DistillSection.model_fields["prior"].description),
    prior_model: str = typer.Option(
        DEFAULT_ENCODER, help="With --prior-weight and --prior encoder: the base encoder (the retriever's start)."
    ),
    force: bool = typer.Option(False, help="Redo even when the output matches these settings and inputs."),
) -> None:
    """Train a cross-encoder on (query + answer, candidate) with a listwise loss over the LLM's preferences."""
    if teacher not in TEACHERS:
        raise typer.BadParameter(f"use one of {', '.join(TEACHERS)}", param_hint="--teacher")
    if prior not in PRIORS:
        raise typer.BadParameter(f"use one of {', '.join(PRIORS)}", param_hint="--prior")
    passages = {p.id: p for p in DataDir(data).passages()}
    candidates = list(read_jsonl(scores, CandidateList))
    inputs = _inputs(data, scores=scores)
    settings = {"stage": "train.reward", **asdict(reward)}
    if force or not is_up_to_date(out, settings, inputs):
        train_reward_model(candidates, passages, out, reward)
        if not is_main_process():  # under torchrun, process 0 writes the manifest and the teacher scores
            return
        write_manifest(
            out / "manifest.json", "train.reward", settings, inputs=inputs, outputs=[out / "model.safetensors"]
        )
        console.print(f"reward model -> {out}")
    else:
        console.print(f"{out} is up to date (same settings and inputs); --force redoes it")
    if not score_all or not is_main_process():
        return
    teacher_inputs = inputs | ({"candidates": file_fingerprint(candidates_file)} if candidates_file else {})
    teacher_inputs["reward_model"] = file_fingerprint(out / "model.safetensors")
    teacher_settings = {"stage": "train.reward.score_all", "teacher": teacher, "top_n": top_n}
    if prior_weight:
        teacher_settings |= {"prior_weight": prior_weight}
        teacher_settings |= {"prior_model": prior_model} if prior == "encoder" else {"prior": prior}
    if not force and is_up_to_date(score_all, teacher_settings, teacher_inputs):
        console.print(f"{score_all} is up to date; --force redoes it")
        return
    lists = list(read_jsonl(candidates_file, CandidateList)) if candidates_file else candidates
    with progress_bar("pairs") as bar:
        task = bar.add_task("teacher scores", total=None)
        scored, _ = teacher_scores(
            lists, passages, teacher, out, top_n=top_n, on_pairs=lambda n: bar.update(task, advance=n)
        )  # type: ignore[arg-type]
    if prior_weight:
        scored = add_prior(scored, passages, prior_weight, prior, prior_model)  # type: ignore[arg-type]
    write_jsonl(score_all, scored)
    write_manifest(manifest_path(score_all), "train.reward.score_all", teacher_settings, teacher_inputs, [score_all])
    console.print(f"teacher scores for {len(scored):,} queries -> {score_all}")


@app.command("retriever")
@stage_settings("retriever")
def retriever(
    retriever: RetrieverConfig,
    scores: Path = typer.Option(
        ...,
        "--scores",
        "-s",
        help="Teacher-scored candidate lists (`llmr train reward --score-all`), or LLM-scored ones with --teacher llm.",
    ),
    data: Path = typer.Option(Path("runs/data"), help="Data folder with the pool (passages)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the retriever (a sentence-transformers folder)."),
    force: bool = typer.Option(False, help="Redo even when the output matches these settings and inputs."),
) -> None:
    """Train the bi-encoder retriever; the result loads with SentenceTransformer(path)."""
    inputs = _inputs(data, scores=scores)
    settings = {"stage": "train.retriever", **asdict(retriever)}
    if not force and is_up_to_date(out, settings, inputs):
        console.print(f"{out} is up to date (same settings and inputs); --force redoes it")
        return
    passages = {p.id: p for p in DataDir(data).passages()}
    train_retriever(list(read_jsonl(scores, CandidateList)), passages, out, retriever)
    if not is_main_process():
        return
    write_manifest(out / "manifest.json", "train.retriever", settings, inputs=inputs, outputs=[out / "config.json"])
    console.print(f"retriever -> {out} (loads with SentenceTransformer('{out}'))")
