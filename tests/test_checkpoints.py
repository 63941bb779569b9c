"""Checkpoint folders are complete or ignored, only llmr's are deleted, and a model appears whole or not at all."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmr.base.files import publish
from llmr.training.fit import latest_checkpoint, open_checkpoints


@dataclass
class Config:
    learning_rate: float = 1e-4


def _checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"weights")
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_the_newest_complete_checkpoint_is_resumed_and_a_cut_one_removed(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 50)
    _checkpoint(tmp_path, 100, complete=False)  # killed before trainer_state.json
    cut = _checkpoint(tmp_path, 150)
    (cut / "trainer_state.json").write_text('{"global_st')  # killed while writing it
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-50"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-50"]


def test_no_complete_checkpoint_means_start_over(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 50, complete=False)
    assert latest_checkpoint(tmp_path) is None


def test_checkpoints_are_kept_for_the_same_run_and_replaced_for_another(tmp_path: Path) -> None:
    out = tmp_path / "model"
    folder = open_checkpoints(out, Config(), "sha256:a")
    _checkpoint(folder, 50)
    assert open_checkpoints(out, Config(), "sha256:a") == folder and (folder / "checkpoint-50").exists()
    open_checkpoints(out, Config(), "sha256:b")  # other data: its checkpoints would mix two runs
    assert not (folder / "checkpoint-50").exists()
    open_checkpoints(out, Config(learning_rate=1.0), "sha256:b")
    assert json.loads((folder / "llmr_config.json").read_text())["config"]["learning_rate"] == 1.0


def test_folders_llmr_did_not_make_are_refused_not_deleted(tmp_path: Path) -> None:
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="files llmr did not write"):
        open_checkpoints(mine, Config(), "sha256:a")
    other = tmp_path / "run"
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not made by llmr"):
        open_checkpoints(other, Config(), "sha256:a")
    assert (mine / "thesis.tex").exists() and (other / "checkpoints" / "keep.txt").exists()


def test_a_model_is_published_whole_or_not_at_all(tmp_path: Path) -> None:
    out = tmp_path / "model"
    publish(out, lambda folder: (folder / "model.safetensors").write_text("v1"))

    def killed(folder: Path) -> None:
        (folder / "model.safetensors").write_text("v2, half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish(out, killed)
    assert (out / "model.safetensors").read_text() == "v1"  # the old model, not half of the new one
    publish(out, lambda folder: (folder / "model.safetensors").write_text("v2"))
    assert (out / "model.safetensors").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging or old folder left


def test_published_files_get_the_umasks_permissions_not_0600(tmp_path: Path) -> None:
    def save(folder: Path) -> None:
        weights = folder / "model.safetensors"
        weights.write_text("w")
        weights.chmod(0o600)  # as safetensors writes them

    old = os.umask(0o022)
    try:
        publish(tmp_path / "model", save)
    finally:
        os.umask(old)
    assert (tmp_path / "model" / "model.safetensors").stat().st_mode & 0o777 == 0o644
