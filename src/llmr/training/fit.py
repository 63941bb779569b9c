"""One training run with a sentence-transformers trainer: the settings both of llmr's models share."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any


def fit(trainer_cls: Any, args_cls: Any, model: Any, dataset: Any, loss: Any, out: Path, config: Any) -> Path:
    """Train `model` on `dataset` and save it to `out` (safetensors, plus llmr_config.json).

    The dataset already holds one rotated group per query per epoch, so the trainer runs one pass.
    Checkpoints go to `out/checkpoints`; a re-run after a kill resumes from the last one.
    """
    import torch

    if len(dataset) == 0:
        raise ValueError("no usable training query: every query lacks a positive above -100 or is held out")
    args = args_cls(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=0.1,  # a float: the warm-up ratio
        bf16=config.bf16,
        use_cpu=not torch.cuda.is_available(),
        seed=config.seed,
        save_steps=50,
        save_total_limit=1,
        logging_steps=10,
        report_to="none",
    )
    trainer = trainer_cls(model=model, args=args, train_dataset=dataset, loss=loss)
    resume = any((out / "checkpoints").glob("checkpoint-*"))
    trainer.train(resume_from_checkpoint=resume or None)
    model.save_pretrained(str(out), safe_serialization=True)
    (out / "llmr_config.json").write_text(json.dumps(asdict(config), indent=2, sort_keys=True))
    return out
