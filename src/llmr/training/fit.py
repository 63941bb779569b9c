"""One training run with a sentence-transformers trainer: the settings both of llmr's models share."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from llmr.base.encoders import default_dtype
from llmr.base.files import publish
from llmr.base.progress import progress_bar
from llmr.distributed.ddp import barrier, is_main_process, world_size

SAVE_STEPS = 50  # a kill loses at most this many steps
STAMP = "llmr_config.json"
log = logging.getLogger("llmr.training")


def data_fingerprint(rows: Any) -> str:
    """A hash of the training rows (texts and teacher scores): checkpoints of other data are not resumed."""
    return "sha256:" + hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def open_checkpoints(out: Path, config: Any, data: str) -> Path:
    """`out/checkpoints` for this run: kept when its stamp (config and data fingerprint) matches, so the run
    resumes; replaced when another run made it; refused (not deleted) when llmr did not make it."""
    if out.is_dir() and not (out / STAMP).exists():
        foreign = [p.name for p in out.iterdir() if p.name not in ("checkpoints", ".checkpoints.tmp")]
        if foreign:
            raise FileExistsError(f"{out} holds files llmr did not write ({foreign[0]}): give a new or empty folder")
    folder, stamp = out / "checkpoints", json.dumps({"config": asdict(config), "data": data}, indent=2, sort_keys=True)
    if folder.exists():
        if not (folder / STAMP).exists():
            raise FileExistsError(f"{folder} was not made by llmr (no {STAMP}): move it away")
        if (folder / STAMP).read_text() == stamp:
            return folder
        shutil.rmtree(folder)  # another run's: resuming would mix two runs
    tmp = out / ".checkpoints.tmp"  # the folder appears with its stamp, or not at all
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / STAMP).write_text(stamp)
    os.replace(tmp, folder)
    return folder


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint: the trainer writes trainer_state.json last, so one without a
    readable one was cut by a kill; it is removed, and the run resumes from the one before (or starts over)."""
    steps = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.rpartition("-")[2] or 0), reverse=True)
    for checkpoint in steps:
        try:
            json.loads((checkpoint / "trainer_state.json").read_text())
            return checkpoint
        except (OSError, ValueError):
            log.warning("%s was cut short by a kill: removed, resuming from an earlier one", checkpoint)
            shutil.rmtree(checkpoint)
    return None


def fit(
    trainer_cls: Any,
    args_cls: Any,
    model: Any,
    dataset: Any,
    loss: Any,
    out: Path,
    config: Any,
    save_steps: int = SAVE_STEPS,
    callbacks: list | None = None,
    find_unused_parameters: bool = True,  # DDP: MiniLM's pooler takes no part in a bi-encoder's loss
) -> Path:
    """Train `model` on `dataset` and save it to `out` (safetensors, plus llmr_config.json).

    The dataset already holds one rotated group per query per epoch, so the trainer runs one pass.
    Checkpoints go to `out/checkpoints`; a re-run with the same config and data resumes from the last
    complete one (anything else starts over), and they go once the model is published. The loss curve
    (mean over all processes, ~100 points) goes to `out/training_log.json`.

    Under torchrun (DDP), `config.batch_size` stays the global batch: each of the N processes takes
    batch_size / N, so a run gives the same steps on any number of processes (when the batch divides the
    dataset: under DDP sentence-transformers drops a last partial batch). Process 0 writes the files.
    """
    import torch

    if len(dataset) == 0:
        raise ValueError("no usable training query: every query lacks a positive above -100 or is held out")
    if config.batch_size % world_size():
        raise ValueError(f"batch_size {config.batch_size} does not split over {world_size()} processes")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    checkpoints = out / "checkpoints"
    if is_main_process():  # removes a checkpoint a kill cut short
        latest_checkpoint(open_checkpoints(out, config, data_fingerprint(dataset.to_dict())))
    args = args_cls(
        output_dir=str(checkpoints),
        num_train_epochs=1,
        per_device_train_batch_size=config.batch_size // world_size(),
        learning_rate=config.learning_rate,
        optim="adamw_torch_fused",  # the same AdamW in one kernel: 9 ms a step for MiniLM on CPU, not 61
        warmup_steps=0.1,  # a float: the warm-up ratio
        bf16=config.bf16 if config.bf16 is not None else default_dtype(device) == torch.bfloat16,
        use_cpu=device == "cpu",
        seed=config.seed,
        data_seed=config.seed,
        save_steps=save_steps,
        save_total_limit=1,
        logging_steps=max(1, len(dataset) // config.batch_size // 100),  # ~100 points of loss curve
        report_to="none",
        logging_nan_inf_filter=False,  # its filter logged a NaN loss as 0.000; `check_loss` stops the run instead
        disable_tqdm=True,  # llmr's own bar below, not the trainer's bar and printed log dicts
        ddp_find_unused_parameters=find_unused_parameters,  # DDP only
    )
    model.model_card_data.generate_widget_examples = False  # a "Computing widget examples" bar, for a hub card
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=callbacks)
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_progress())
    barrier()  # the trainer has joined the process group; process 0 has cleaned the checkpoints
    resume = latest_checkpoint(checkpoints)  # the same one in every process, after process 0's clean-up
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if is_main_process():
        publish(out, partial(save_model, model, config, trainer.state.log_history))
    barrier()
    return out


def check_loss(loss: float, step: int) -> None:
    """A NaN or infinite loss makes every later step NaN: stop with one line, not an all-NaN model."""
    if not math.isfinite(loss):
        raise RuntimeError(
            f"training stopped at step {step}: the loss is {loss} (check the teacher scores and the learning rate)"
        )


def _progress() -> Any:
    """A trainer callback that shows llmr's progress bar (steps, rate, ETA and the last logged loss) and
    stops the run when the loss turns non-finite."""
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.bar = progress_bar("steps") if state.is_world_process_zero else None
            if self.bar is not None:
                self.bar.start()
                self.task = self.bar.add_task("training", total=state.max_steps, completed=state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if self.bar is not None:
                self.bar.update(self.task, completed=state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **_: Any) -> None:
            if logs and "loss" in logs:
                check_loss(float(logs["loss"]), state.global_step)
            if self.bar is not None and logs and "loss" in logs:
                self.bar.update(self.task, description=f"training, loss {float(logs['loss']):.3f}")

        def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if self.bar is not None:
                self.bar.stop()

    return Progress()


def save_model(model: Any, config: Any, log_history: list, folder: Path) -> None:
    """The model as a plain sentence-transformers folder, with llmr's config and the loss curve beside it."""
    model.save_pretrained(str(folder), safe_serialization=True)
    (folder / STAMP).write_text(json.dumps(asdict(config), indent=2, sort_keys=True))
    (folder / "training_log.json").write_text(json.dumps(log_history, indent=1))
