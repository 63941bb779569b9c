"""Training checkpoints: a killed run resumes where it stopped; a changed config never resumes."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import TrainerCallback

from llmr.training.reward import RewardConfig, train_reward_model
from test_reward import _data

CONFIG = RewardConfig(epochs=4, batch_size=6, learning_rate=5e-5, bf16=False)  # 24 groups: 4 steps


class Steps(TrainerCallback):
    """Counts the optimizer steps a run takes; raises KeyboardInterrupt (a kill) after `kill_at`."""

    def __init__(self, kill_at: int | None = None) -> None:
        self.kill_at = kill_at
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)
        if state.global_step == self.kill_at:
            raise KeyboardInterrupt


def kill_at_step_3(out: Path, cands, pool) -> Steps:
    """Train with a checkpoint every 2 steps and kill the run after step 3."""
    killed = Steps(kill_at=3)
    with pytest.raises(KeyboardInterrupt):
        train_reward_model(cands, pool, out, CONFIG, save_steps=2, callbacks=[killed])
    return killed


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_killed_training_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    cands, pool = _data()
    out = tmp_path / "reward"
    killed = kill_at_step_3(out, cands, pool)
    assert killed.steps == [1, 2, 3] and (out / "checkpoints" / "checkpoint-2").is_dir()
    assert not (out / "model.safetensors").exists()

    resumed = Steps()
    train_reward_model(cands, pool, out, CONFIG, save_steps=2, callbacks=[resumed])
    assert resumed.steps == [3, 4]  # steps 1-2 came from the checkpoint
    assert (out / "model.safetensors").exists() and not (out / "checkpoints").exists()

    straight = train_reward_model(cands, pool, tmp_path / "straight", CONFIG)
    a, b = load_file(out / "model.safetensors"), load_file(straight / "model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4  # the same model as an uninterrupted run


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_checkpoints_of_another_config_are_not_resumed(tmp_path: Path) -> None:
    cands, pool = _data()
    out = tmp_path / "reward"
    kill_at_step_3(out, cands, pool)
    other = Steps()
    train_reward_model(
        cands, pool, out, RewardConfig(epochs=4, batch_size=6, learning_rate=1e-5, bf16=False), callbacks=[other]
    )
    assert other.steps == [1, 2, 3, 4]  # started over


@pytest.mark.slow  # real-model training or many LLM calls: CI's full run
def test_a_checkpoint_cut_short_and_other_data_are_not_resumed(tmp_path: Path) -> None:
    cands, pool = _data()
    out = tmp_path / "reward"
    kill_at_step_3(out, cands, pool)
    cut = out / "checkpoints" / "checkpoint-3"  # a kill while the trainer wrote step 3's checkpoint
    cut.mkdir()
    (cut / "model.safetensors").write_bytes(b"half")
    resumed = Steps()
    train_reward_model(cands, pool, out, CONFIG, save_steps=2, callbacks=[resumed])
    assert resumed.steps == [3, 4]  # from checkpoint-2, the last complete one (this failed with FileNotFoundError)

    kill_at_step_3(tmp_path / "b", cands, pool)
    other = Steps()  # the same config on other scores: resuming would mix two runs' data
    train_reward_model(list(reversed(cands)), pool, tmp_path / "b", CONFIG, save_steps=2, callbacks=[other])
    assert other.steps == [1, 2, 3, 4]


def test_a_non_finite_loss_stops_training_with_one_line() -> None:
    """The trainer's NaN filter logged loss 0.000 while 101 of 103 tensors went NaN, and the run exited 0."""
    from types import SimpleNamespace

    from llmr.training.fit import _progress

    watch, state = _progress(), SimpleNamespace(is_world_process_zero=False, global_step=7)
    watch.on_train_begin(None, state, None)
    watch.on_log(None, state, None, logs={"loss": 0.25})
    for loss in (float("nan"), float("inf")):
        with pytest.raises(RuntimeError, match=f"training stopped at step 7: the loss is {loss}"):
            watch.on_log(None, state, None, logs={"loss": loss})
