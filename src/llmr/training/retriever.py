"""Stage 5 of LLM-R: a bi-encoder retriever trained on scored candidate lists (the teacher's, or the LLM's).

One shared encoder, mean pooling, L2 normalisation, cosine / τ. The query is embedded alone (at test
time there is no answer); pool items are embedded as they are (query + answer). Losses:
- "distill" (LLM-R): KL to the scores over 1 positive + 3 hard negatives + 0.2 × in-batch InfoNCE
  (DistillationLoss);
- "contrastive" (EPR's): InfoNCE only, positive = a top candidate, hard negatives from the bottom
  (MultipleNegativesRankingLoss); EPR is this loss on the LLM's own scores (`epr_config`).
The result is a plain sentence-transformers folder (safetensors): `SentenceTransformer(path)` loads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from llmr.base.encoders import DEFAULT_ENCODER, resolve_encoder
from llmr.base.settings import check_bounds, setting
from llmr.data.schema import CandidateList, Passage
from llmr.distributed.ddp import world_size
from llmr.training.fit import fit
from llmr.training.groups import GroupConfig, training_groups

Loss = Literal["distill", "contrastive"]


@dataclass(frozen=True)
class RetrieverConfig:
    model: str = setting(DEFAULT_ENCODER, "Initial encoder: the embedded MiniLM, a folder or a hub id.")
    loss: Loss = setting(
        "distill", "'distill': KL to the scores + in-batch InfoNCE (LLM-R); 'contrastive': EPR's InfoNCE."
    )
    epochs: int = setting(3, "Epochs; each shows every query a different (rotated) group.", ge=1)
    batch_size: int = setting(32, "Queries per step (their documents are each other's in-batch negatives).", ge=1)
    learning_rate: float = setting(3e-5, "Peak learning rate.", gt=0)
    temperature: float = setting(0.01, "τ: similarities are cosine / τ.", gt=0)
    contrastive_weight: float = setting(0.2, "Weight of the in-batch InfoNCE term (loss distill).", ge=0)
    max_length: int = setting(256, "Token cap on queries and pool items.", ge=8)
    bf16: bool | None = setting(None, "bf16 autocast; default: where the CPU (AVX-512 BF16/AMX) or GPU has it.")
    dropout: float | None = setting(
        0.0,
        "Dropout while training (hidden and attention); None: the encoder's own (MiniLM: 0.1). Off, a CPU step "
        "is 1.4x faster at the same ICL accuracy (benchmarks/RESULTS.md).",
        ge=0,
        lt=1,
    )
    seed: int = setting(42, "Seed of training.")
    # The authors' recipe: 3 hard negatives, none of a classification query's own task and label.
    groups: GroupConfig = setting(factory=lambda: GroupConfig(n_negatives=3, drop_same_label_negatives=True))

    def __post_init__(self) -> None:
        check_bounds(self)


def retriever_dataset(candidates: Sequence[CandidateList], passages: Mapping[str, Passage], config: RetrieverConfig):
    """Columns query, doc_1 (positive), doc_2.., and (loss distill) label: the scores of those docs."""
    from datasets import Dataset

    n_docs = config.groups.n_negatives + 1
    rows: dict[str, list] = {"query": [], **{f"doc_{i + 1}": [] for i in range(n_docs)}, "label": []}
    for cands, group in training_groups(candidates, config.epochs, config.groups, passages):
        rows["query"].append(cands.query)
        for i, doc_id in enumerate(group.doc_ids):
            rows[f"doc_{i + 1}"].append(passages[doc_id].contents)
        rows["label"].append(list(group.scores))
    if config.loss == "contrastive":
        del rows["label"]  # InfoNCE needs no scores
    return Dataset.from_dict(rows)


def train_retriever(
    candidates: Sequence[CandidateList],
    passages: Mapping[str, Passage],
    out: Path | str,
    config: RetrieverConfig,
    fast: bool = True,
    **fit_options: Any,
) -> Path:
    """Train on scored candidate lists (the teacher's, for LLM-R); save to `out`.
    `fast=False` keeps sentence-transformers' defaults (sdpa attention, one padded batch per column), for
    benchmarks/training_speed.py's side by side. `fit_options` go to `fit` (save_steps, callbacks)."""
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from llmr.training.losses import DistillationLoss  # imports sentence-transformers (~10 s)

    dataset = retriever_dataset(candidates, passages, config)
    dropout = (
        {}
        if config.dropout is None
        else {"hidden_dropout_prob": config.dropout, "attention_probs_dropout_prob": config.dropout}
    )
    model = SentenceTransformer(
        resolve_encoder(config.model), model_kwargs=training_attention() if fast else None, config_kwargs=dropout
    )
    model.max_seq_length = config.max_length
    if config.loss == "distill":
        loss = DistillationLoss(
            model, config.temperature, config.contrastive_weight, gather=world_size() > 1, sort_by_length=fast
        )
    else:  # gather only under DDP: alone, sentence-transformers warns on every step
        loss = MultipleNegativesRankingLoss(
            model, scale=1.0 / config.temperature, gather_across_devices=world_size() > 1
        )
    return fit(
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
        model,
        dataset,
        loss,
        Path(out),
        config,
        **fit_options,
    )


def training_attention() -> dict[str, str]:
    """Eager attention on CPU: sdpa's CPU flash-attention backward took 37% of a training step on the study's
    texts (≤ 96 tokens), eager a fraction of it (benchmarks/RESULTS.md); sdpa on GPUs."""
    import torch

    return {"attn_implementation": "sdpa" if torch.cuda.is_available() else "eager"}


def epr_config(config: RetrieverConfig) -> RetrieverConfig:
    """EPR (Rubin et al.): the same encoder and schedule, with the contrastive loss."""
    return replace(config, loss="contrastive")
