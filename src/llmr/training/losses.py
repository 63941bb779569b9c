"""The retriever's distillation loss (LLM-R, eq. 4): KL to the reward model + in-batch InfoNCE."""

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
        self, model: nn.Module, temperature: float = 0.01, contrastive_weight: float = 0.2, gather: bool = True
    ) -> None:
        super().__init__()
        self.model = model
        self.temperature = temperature
        self.contrastive_weight = contrastive_weight
        self.infonce = MultipleNegativesRankingLoss(model, scale=1.0 / temperature, gather_across_devices=gather)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor) -> Tensor:
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
