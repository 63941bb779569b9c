"""Stage 5 of LLM-R: a bi-encoder retriever distilled from the reward model (or, EPR, from the LLM).

One shared encoder, mean pooling, L2 normalisation, cosine / τ. The query is embedded alone (at test
time there is no answer); pool items are embedded as they are (query + answer).
- teacher "reward": KL to the reward model's scores over 1 positive + 3 hard negatives
  + 0.2 × in-batch InfoNCE (DistillationLoss);
- teacher "llm" (the EPR baseline): InfoNCE only, positive = an LLM top candidate, hard negatives
  from the LLM's bottom (MultipleNegativesRankingLoss).
`train_side="query"` keeps the pool's base embeddings and trains the query side only (query_side.py).
The result is a plain sentence-transformers folder (safetensors): `SentenceTransformer(path)` loads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmr.base.encoders import DEFAULT_ENCODER, resolve_encoder
from llmr.base.settings import check_bounds, setting
from llmr.data.schema import CandidateList, Passage
from llmr.distributed.ddp import world_size
from llmr.training.fit import fit
from llmr.training.groups import GroupConfig, training_groups
from llmr.training.query_side import train_query_side

Teacher = Literal["reward", "llm"]
TrainSide = Literal["both", "query"]


@dataclass(frozen=True)
class RetrieverConfig:
    model: str = setting(DEFAULT_ENCODER, "Initial encoder: the embedded MiniLM, a folder or a hub id.")
    teacher: Teacher = setting("reward", "'reward': distil the reward model (LLM-R); 'llm': the LLM's scores (EPR).")
    epochs: int = setting(3, "Epochs; each shows every query a different (rotated) group.", ge=1)
    batch_size: int = setting(32, "Queries per step (their documents are each other's in-batch negatives).", ge=1)
    learning_rate: float = setting(3e-5, "Peak learning rate.", gt=0)
    temperature: float = setting(0.01, "τ: similarities are cosine / τ.", gt=0)
    contrastive_weight: float = setting(0.2, "Weight of the in-batch InfoNCE term (teacher reward).", ge=0)
    max_length: int = setting(256, "Token cap on queries (and on pool items when both sides train).", ge=8)
    train_side: TrainSide = setting(
        "both", "'both': one encoder trained on both sides (the paper); 'query': pool embeddings fixed (faster)."
    )
    document_max_length: int = setting(256, "With train_side 'query': token cap on pool items.", ge=8)
    # Without it the query side drifts to near-orthogonal to the fixed pool (top cosine 0.69 -> 0.10 in
    # the quality study) and ranks the whole pool by noise: benchmarks/RESULTS.md.
    anchor_weight: float = setting(5.0, "With train_side 'query': weight of 1 - cos(query, its base embedding).", ge=0)
    bf16: bool | None = setting(None, "bf16 autocast; default: where the CPU (AVX-512 BF16/AMX) or GPU has it.")
    seed: int = setting(42, "Seed of training.")
    # The authors' recipe: 3 hard negatives, none of a classification query's own task and label.
    groups: GroupConfig = setting(factory=lambda: GroupConfig(n_negatives=3, drop_same_label_negatives=True))

    def __post_init__(self) -> None:
        check_bounds(self)


def retriever_dataset(candidates: Sequence[CandidateList], passages: Mapping[str, Passage], config: RetrieverConfig):
    """Columns query, doc_1 (positive), doc_2.., and label (the teacher's scores of those docs)."""
    from datasets import Dataset

    n_docs = config.groups.n_negatives + 1
    rows: dict[str, list] = {"query": [], **{f"doc_{i + 1}": [] for i in range(n_docs)}, "label": []}
    for cands, group in training_groups(candidates, config.epochs, config.groups, passages):
        rows["query"].append(cands.query)
        for i, doc_id in enumerate(group.doc_ids):
            rows[f"doc_{i + 1}"].append(passages[doc_id].contents)
        rows["label"].append(list(group.scores))
    if config.teacher == "llm":
        del rows["label"]  # InfoNCE needs no scores
    return Dataset.from_dict(rows)


def train_retriever(
    candidates: Sequence[CandidateList],
    passages: Mapping[str, Passage],
    out: Path | str,
    config: RetrieverConfig,
    **fit_options: Any,
) -> Path:
    """Train from teacher-scored (reward) or LLM-scored (EPR) candidate lists; save to `out`.
    `fit_options` go to `fit` (save_steps, callbacks)."""
    if config.train_side == "query":
        if config.teacher != "reward":
            raise ValueError("train_side 'query' distils a teacher's scores: use teacher 'reward'")
        return train_query_side(candidates, passages, Path(out), config, **fit_options)
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from llmr.training.losses import DistillationLoss  # imports sentence-transformers (~10 s)

    dataset = retriever_dataset(candidates, passages, config)
    model = SentenceTransformer(resolve_encoder(config.model))
    model.max_seq_length = config.max_length
    if config.teacher == "reward":
        loss = DistillationLoss(model, config.temperature, config.contrastive_weight, gather=world_size() > 1)
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
