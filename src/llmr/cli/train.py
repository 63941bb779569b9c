"""`llmr train reward|teacher|retriever`: the reward model from LLM feedback, the teacher's scores, the retriever.

Settings are the pipeline's `reward` / `distill` / `retriever` sections (`cli/settings.py`): every one is an
--option, `--config` reads them from a pipeline YAML. A finished output with the same settings and
inputs is not redone (`--force` redoes it). reward and retriever run as they are under
`torchrun --nproc-per-node N -m llmr.cli train ...` (DDP; gloo on CPU).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
from rich.console import Console

from llmr.base.files import file_fingerprint
from llmr.base.manifest import is_up_to_date, manifest_path, write_manifest
from llmr.cli.settings import stage_settings
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl
from llmr.data.schema import CandidateList
from llmr.distributed.ddp import is_main_process
from llmr.pipeline import stages
from llmr.pipeline.config import DistillSection, PipelineConfig
from llmr.training.fit import SAVE_STEPS
from llmr.training.retriever import RetrieverConfig, train_retriever
from llmr.training.reward import RewardConfig, train_reward_model

app = typer.Typer(
    help="Train the reward model from LLM feedback, score with the teacher, train the retriever.", no_args_is_help=True
)
console = Console()


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
    force: bool = typer.Option(False, help="Redo even when the output matches these settings and inputs."),
) -> None:
    """Train a cross-encoder on (query + answer, candidate) with a listwise loss over the LLM's preferences."""
    inputs = _inputs(data, scores=scores)
    settings = {"stage": "train.reward", **asdict(reward)}
    if not force and is_up_to_date(out, settings, inputs):
        console.print(f"{out} is up to date (same settings and inputs); --force redoes it")
        return
    passages = {p.id: p for p in DataDir(data).passages()}
    train_reward_model(list(read_jsonl(scores, CandidateList)), passages, out, reward)
    if not is_main_process():  # under torchrun, process 0 writes the manifest
        return
    write_manifest(out / "manifest.json", "train.reward", settings, inputs=inputs, outputs=[out / "model.safetensors"])
    console.print(f"reward model -> {out}")


@app.command("teacher")
@stage_settings("distill")
def teacher(
    distill: DistillSection,
    config: PipelineConfig,
    candidates: Path = typer.Option(
        ..., "--candidates", "-c", help="Candidate lists to score (`llmr candidates`: many more queries)."
    ),
    reward_model: Path = typer.Option(
        None,
        "--reward-model",
        "-r",
        help="The reward model (`llmr train reward`); --teacher penalties needs none.",
    ),
    llm_scores: Path = typer.Option(
        None,
        "--llm-scores",
        help="The LLM's scored lists (`llmr score`) for --teacher llm+penalties; --teacher llm reads them from -c.",
    ),
    data: Path = typer.Option(Path("runs/data"), help="Data folder with the pool (passages)."),
    out: Path = typer.Option(..., "--out", "-o", help="File for the teacher-scored lists (`llmr train retriever -s`)."),
    cache: Path = typer.Option(None, help="Score cache (SQLite). Default: $LLMR_CACHE/scores.sqlite."),
    force: bool = typer.Option(False, help="Redo even when the output matches these settings and inputs."),
) -> None:
    """Score every candidate list with the teacher: the pipeline's teacher stage. The penalties and the
    runtime come from the config: --set scoring.penalize_other_task=false, --set encoder_runtime=onnx."""
    if distill.teacher == "llm" and llm_scores is None:
        llm_scores = candidates
    inputs = _inputs(
        data, candidates=candidates, **({"llm_scores": llm_scores} if llm_scores not in (None, candidates) else {})
    )
    if reward_model:
        inputs["reward_model"] = file_fingerprint(reward_model / "model.safetensors")
    settings = {"stage": "train.teacher", **stages.teacher_settings(config)}
    if not force and is_up_to_date(out, settings, inputs):
        console.print(f"{out} is up to date (same settings and inputs); --force redoes it")
        return
    report = stages.teacher(data, candidates, reward_model, config, cache, out, llm_scores)
    write_manifest(manifest_path(out), "train.teacher", settings, inputs, [out])
    console.print(
        f"teacher scores for {report['queries']:,} queries ({report['pairs']:,} pairs, "
        f"{report['cached']:,} from the cache) -> {out}"
    )


@app.command("retriever")
@stage_settings("retriever")
def retriever(
    retriever: RetrieverConfig,
    scores: Path = typer.Option(
        ...,
        "--scores",
        "-s",
        help="Teacher-scored candidate lists (`llmr train teacher`), or LLM-scored ones with --loss contrastive (EPR).",
    ),
    data: Path = typer.Option(Path("runs/data"), help="Data folder with the pool (passages)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the retriever (a sentence-transformers folder)."),
    force: bool = typer.Option(False, help="Redo even when the output matches these settings and inputs."),
    save_steps: int = typer.Option(
        SAVE_STEPS, "--save-steps", min=1, help="Steps between checkpoints: the most a kill can lose."
    ),
) -> None:
    """Train the bi-encoder retriever; the result loads with SentenceTransformer(path)."""
    inputs = _inputs(data, scores=scores)
    settings = {"stage": "train.retriever", **asdict(retriever)}
    if not force and is_up_to_date(out, settings, inputs):
        console.print(f"{out} is up to date (same settings and inputs); --force redoes it")
        return
    passages = {p.id: p for p in DataDir(data).passages()}
    train_retriever(list(read_jsonl(scores, CandidateList)), passages, out, retriever, save_steps=save_steps)
    if not is_main_process():
        return
    write_manifest(out / "manifest.json", "train.retriever", settings, inputs=inputs, outputs=[out / "config.json"])
    console.print(f"retriever -> {out} (loads with SentenceTransformer('{out}'))")
