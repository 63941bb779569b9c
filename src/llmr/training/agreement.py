"""How often one scorer orders a query's candidates as another does (pairwise agreement).

Used on held-back training queries: does the reward model follow the LLM, and does the retriever
follow the reward model (better than the encoder it started from)?
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from llmr.base.encoders import Encoder
from llmr.data.schema import PENALTY, CandidateList, Passage


def pairwise_agreement(
    reference: Sequence[float], predicted: Sequence[float], include_penalized: bool = False
) -> tuple[int, int]:
    """(agreeing, compared) over candidate pairs the reference orders strictly; penalized (-100) ones are
    skipped unless `include_penalized` (then a kept candidate above a penalized one counts too)."""
    ref, pred = np.asarray(reference, dtype=float), np.asarray(predicted, dtype=float)
    if not include_penalized:
        keep = ref > PENALTY
        ref, pred = ref[keep], pred[keep]
    i, j = np.triu_indices(len(ref), k=1)
    strict = ref[i] != ref[j]
    agree = np.sign(ref[i] - ref[j]) == np.sign(pred[i] - pred[j])
    return int((agree & strict).sum()), int(strict.sum())


def agreement(
    reference: Sequence[CandidateList], predicted: Mapping[str, Sequence[float]], include_penalized: bool = False
) -> float | None:
    """Micro-averaged pairwise agreement of `predicted[query_id]` with each reference list's doc_scores."""
    agree = total = 0
    for cands in reference:
        a, n = pairwise_agreement(cands.doc_scores, predicted[cands.query_id], include_penalized)
        agree, total = agree + a, total + n
    return agree / total if total else None


def kept_above_penalized(reference: Sequence[CandidateList], predicted: Mapping[str, Sequence[float]]) -> float | None:
    """How often `predicted` scores a candidate the LLM feedback keeps above one it penalizes (-100:
    another task's, or another label's) — the part of the order `agreement` skips."""
    above = total = 0
    for cands in reference:
        pairs = list(zip(cands.doc_scores, predicted[cands.query_id], strict=True))
        kept = [p for s, p in pairs if s > PENALTY]
        dropped = [p for s, p in pairs if s <= PENALTY]
        above += sum(k > d for k in kept for d in dropped)
        total += len(kept) * len(dropped)
    return above / total if total else None


def retriever_similarities(
    model: str, candidates: Sequence[CandidateList], passages: Mapping[str, Passage]
) -> dict[str, list[float]]:
    """Cosine similarity of each query (alone, as at test time) to each of its candidates, per query id."""
    encoder = Encoder(model)
    docs = sorted({d for c in candidates for d in c.doc_ids})
    doc_vecs = dict(zip(docs, encoder.encode_documents([passages[d].contents for d in docs]), strict=True))
    query_vecs = encoder.encode_queries([c.query for c in candidates])
    return {
        c.query_id: [float(q @ doc_vecs[d]) for d in c.doc_ids] for c, q in zip(candidates, query_vecs, strict=True)
    }
