"""Stage 3 of LLM-R: a cross-encoder reward model learns the LLM's preferences.

Input pair: (query + "\\n" + gold answer, candidate contents). Loss: listwise softmax cross-entropy
over a group of 1 positive + 7 negatives: sentence-transformers' ListNetLoss with a one-hot target
(label 0 for the positive, -1e4 for the negatives, whose softmax is exactly one-hot).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmr.base.encoders import DEFAULT_ENCODER, resolve_encoder
from llmr.base.settings import check_bounds, setting
from llmr.data.schema import CandidateList, Passage, answer_text
from llmr.training.fit import fit
from llmr.training.groups import GroupConfig, training_groups

NEGATIVE_LABEL = -1e4  # softmax([0, -1e4, ...]) is one-hot: plain cross-entropy on the positive


@dataclass(frozen=True)
class RewardConfig:
    model: str = setting(DEFAULT_ENCODER, "Initial encoder: the embedded MiniLM, a folder or a hub id.")
    epochs: int = setting(3, "Epochs; each shows every query a different (rotated) group.", ge=1)
    batch_size: int = setting(8, "Groups (1 positive + negatives) per step.", ge=1)
    learning_rate: float = setting(2e-5, "Peak learning rate.", gt=0)
    max_length: int = setting(256, "Token cap on each (query + answer, candidate) pair.", ge=8)
    # The answer and the label sit at the end of both texts (at 128 tokens, right truncation hid them
    # in 37% of the quality study's pairs: benchmarks/RESULTS.md).
    truncation_side: Literal["left", "right"] = setting("left", "Over the cap: cut 'left' (keeps answers) or 'right'.")
    bf16: bool | None = setting(None, "bf16 autocast; default: where the CPU (AVX-512 BF16/AMX) or GPU has it.")
    seed: int = setting(42, "Seed of training.")
    groups: GroupConfig = setting(factory=GroupConfig)

    def __post_init__(self) -> None:
        check_bounds(self)


def query_text(cands: CandidateList) -> str:
    return f"{cands.query}\n{answer_text(cands)}"


def reward_dataset(candidates: Sequence[CandidateList], passages: Mapping[str, Passage], config: RewardConfig):
    """Columns query, docs (positive first), labels: one row per usable query per epoch (rotating groups)."""
    from datasets import Dataset

    rows: dict[str, list] = {"query": [], "docs": [], "labels": []}
    for cands, group in training_groups(candidates, config.epochs, config.groups, passages):
        rows["query"].append(query_text(cands))
        rows["docs"].append([passages[d].contents for d in group.doc_ids])
        rows["labels"].append([0.0] + [NEGATIVE_LABEL] * (len(group.doc_ids) - 1))
    return Dataset.from_dict(rows)


def reward_model(config: RewardConfig):
    """The untrained cross-encoder: one logit per pair; its truncation side is saved with it, so the
    teacher stage scores as it was trained. ListNet trains logits, so `predict` returns them as they are
    (sentence-transformers' default for one label, a sigmoid, squeezes the teacher's softmax flat)."""
    from sentence_transformers.cross_encoder import CrossEncoder
    from torch import nn

    with _quiet_load():
        model = CrossEncoder(
            resolve_encoder(config.model), num_labels=1, max_length=config.max_length, activation_fn=nn.Identity()
        )
    model.tokenizer.truncation_side = config.truncation_side
    return model


@contextmanager
def _quiet_load() -> Iterator[None]:
    """The score head is new by design, and the encoder a SentenceTransformer: transformers' LOAD REPORT
    (a MISSING classifier.* table with raw escape codes) and sentence-transformers' "Converting ... to
    CrossEncoder" warning tell a user nothing to act on. Only their two loggers, only during this load."""
    loggers = [logging.getLogger(n) for n in ("transformers.modeling_utils", "sentence_transformers.base.model")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def train_reward_model(
    candidates: Sequence[CandidateList],
    passages: Mapping[str, Passage],
    out: Path | str,
    config: RewardConfig,
    **fit_options: Any,
) -> Path:
    """Train and save the reward model to `out` (a plain CrossEncoder folder; resumes after a kill).
    `fit_options` go to `fit` (save_steps, callbacks)."""
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import ListNetLoss
    from transformers import set_seed

    set_seed(config.seed)  # the new score head's initial weights
    model = reward_model(config)
    dataset = reward_dataset(candidates, passages, config)
    return fit(
        CrossEncoderTrainer,
        CrossEncoderTrainingArguments,
        model,
        dataset,
        ListNetLoss(model),
        Path(out),
        config,
        find_unused_parameters=False,  # the loss runs the model once per document column: DDP must not re-mark
        **fit_options,
    )
