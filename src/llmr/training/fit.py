"""One training run with a sentence-transformers trainer: the settings both of llmr's models share."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

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
) -> Path:
    """Train `model` on `dataset` and save it to `out` (safetensors, plus llmr_config.json).

    The dataset already holds one rotated group per query per epoch, so the trainer runs one pass.
    Checkpoints go to `out/checkpoints`; a re-run with the same config resumes from the last one (a
    changed config starts over), and they are removed once the model is saved.
    """
    import torch

    from llmr.llm.hf import default_dtype

    if len(dataset) == 0:
        raise ValueError("no usable training query: every query lacks a positive above -100 or is held out")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    checkpoints = out / "checkpoints"
    settings = json.dumps(asdict(config), indent=2, sort_keys=True)
    stamp = checkpoints / "llmr_config.json"
    if checkpoints.exists() and (not stamp.exists() or stamp.read_text() != settings):
        shutil.rmtree(checkpoints)  # made by another config: resuming would mix two runs
    checkpoints.mkdir(parents=True, exist_ok=True)
    stamp.write_text(settings)
    args = args_cls(
        output_dir=str(checkpoints),
        num_train_epochs=1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=0.1,  # a float: the warm-up ratio
        bf16=config.bf16 if config.bf16 is not None else default_dtype(device) == torch.bfloat16,
        use_cpu=device == "cpu",
        seed=config.seed,
        data_seed=config.seed,
        save_steps=save_steps,
        save_total_limit=1,
        logging_steps=10,
        report_to="none",
    )
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=callbacks)
    resume = any(checkpoints.glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=resume or None)
    model.save_pretrained(str(out), safe_serialization=True)
    (out / "llmr_config.json").write_text(settings)
    shutil.rmtree(checkpoints)
    return out
