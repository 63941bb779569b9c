"""One training run with a sentence-transformers trainer: the settings both of llmr's models share."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from llmr.base.encoders import default_dtype
from llmr.distributed.ddp import barrier, is_main_process, world_size

SAVE_STEPS = 50  # a kill loses at most this many steps


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
    Checkpoints go to `out/checkpoints`; a re-run with the same config resumes from the last one (a
    changed config starts over), and they are removed once the model is saved. The loss curve (mean
    over all processes, ~100 points) goes to `out/training_log.json`.

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
    settings = json.dumps(asdict(config), indent=2, sort_keys=True)
    stamp = checkpoints / "llmr_config.json"
    if is_main_process():
        if checkpoints.exists() and (not stamp.exists() or stamp.read_text() != settings):
            shutil.rmtree(checkpoints)  # made by another config: resuming would mix two runs
        checkpoints.mkdir(parents=True, exist_ok=True)
        stamp.write_text(settings)
    args = args_cls(
        output_dir=str(checkpoints),
        num_train_epochs=1,
        per_device_train_batch_size=config.batch_size // world_size(),
        learning_rate=config.learning_rate,
        warmup_steps=0.1,  # a float: the warm-up ratio
        bf16=config.bf16 if config.bf16 is not None else default_dtype(device) == torch.bfloat16,
        use_cpu=device == "cpu",
        seed=config.seed,
        data_seed=config.seed,
        save_steps=save_steps,
        save_total_limit=1,
        logging_steps=max(1, len(dataset) // config.batch_size // 100),  # ~100 points of loss curve
        report_to="none",
        ddp_find_unused_parameters=find_unused_parameters,  # DDP only
    )
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=callbacks)
    barrier()  # the trainer has joined the process group; process 0 has cleaned the checkpoints
    resume = any(checkpoints.glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=resume or None)
    if is_main_process():
        model.save_pretrained(str(out), safe_serialization=True)
        (out / "llmr_config.json").write_text(settings)
        (out / "training_log.json").write_text(json.dumps(trainer.state.log_history, indent=1))
        shutil.rmtree(checkpoints)
    barrier()
    return out
