"""The retriever's distillation loss (LLM-R, eq. 4): KL to the reward model + in-batch InfoNCE, and the
length-sorted forward pass that makes it cheap on CPU."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import Tensor, nn


class DistillationLoss(nn.Module):
    """KL(softmax(teacher) ‖ softmax(cos / τ)) over each query's group (positive + hard negatives),
    plus `contrastive_weight` × InfoNCE over the batch (every other query's documents are negatives).

    Columns: query, doc_1 (the positive), doc_2..doc_n; labels: the teacher's score of each doc.
    Under DDP (`gather`), every process's documents are negatives, as one large batch would give.
    Unlike DistillKLDivLoss, the KL term is not rescaled by τ², which at τ = 0.01 would mute it.
    """

    def __init__(
        self,
        model: nn.Module,
        temperature: float = 0.01,
        contrastive_weight: float = 0.2,
        gather: bool = True,
        sort_by_length: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.sort_by_length = sort_by_length
        self.temperature = temperature
        self.contrastive_weight = contrastive_weight
        self.infonce = MultipleNegativesRankingLoss(model, scale=1.0 / temperature, gather_across_devices=gather)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
        sentence_features = list(sentence_features)
        embeddings = embed_sorted(self.model, sentence_features) if self.sort_by_length else None
        if embeddings is None:
            embeddings = embed_columns(self.model, sentence_features)
        query, docs = embeddings[0], torch.stack(embeddings[1:], dim=1)  # (B, D), (B, G, D)
        student = torch.einsum("bd,bgd->bg", F.normalize(query, dim=-1), F.normalize(docs, dim=-1))
        kl = F.kl_div(
            torch.log_softmax(student / self.temperature, dim=-1),
            torch.softmax(labels.float(), dim=-1),
            reduction="batchmean",
        )
        if not self.contrastive_weight:
            return kl
        return kl + self.contrastive_weight * self.infonce.compute_loss_from_embeddings(embeddings, labels)

    def get_config_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "contrastive_weight": self.contrastive_weight}


def embed_sorted(model: nn.Module, columns: list[dict[str, Any]], chunks: int | None = None) -> list[Tensor] | None:
    """Every column's texts in one pass, sorted by length and cut into `chunks` (default: the number of
    columns) chunks of similar length, each trimmed to its longest text. The same embeddings as one
    forward per column, with little compute spent on padding (each column pads to its longest text:
    real texts of ~60 tokens then fill ~60% of a 96-token step). None when the columns are not
    plain padded token batches (another modality), so the caller falls back."""
    first = columns[0]
    tensors = [k for k, v in first.items() if isinstance(v, Tensor)]
    if "attention_mask" not in tensors or any(
        set(c) != set(first) or any(c[k].ndim != 2 for k in tensors) for c in columns
    ):
        return None
    width = max(c["attention_mask"].shape[1] for c in columns)
    joined = {k: torch.cat([F.pad(c[k], [0, width - c[k].shape[1]]) for c in columns]) for k in tensors}
    lengths = joined["attention_mask"].sum(dim=1)
    order = torch.argsort(lengths, descending=True)
    parts = []
    for rows in order.tensor_split(chunks or len(columns)):
        if len(rows):
            w = int(lengths[rows].max())
            chunk = {**first, **{k: v[rows, :w] for k, v in joined.items()}}
            parts.append(model(chunk)["sentence_embedding"])
    embedded = torch.cat(parts)[torch.argsort(order)]  # back to the columns' order
    return list(embedded.split(first["attention_mask"].shape[0]))
