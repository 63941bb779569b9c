"""Query-side distillation: the pool keeps the base encoder's embeddings (computed once), only the
query encoder trains (RetrieverConfig.train_side = "query").

A step then encodes its queries alone instead of queries + (1 + n) documents each, so it is several
times cheaper, and pool items can be embedded at full length once. The loss is DistillationLoss's:
KL(softmax(teacher) ‖ softmax(cos / τ)) over each query's group + `contrastive_weight` × InfoNCE
over every document of the batch + `anchor_weight` × (1 − cos) to the base encoder's embedding of
the query, which keeps the queries in the space the pool was embedded in. The saved folder is a
sentence-transformers Router (query modules: the trained encoder; document modules: the base
encoder): `encode_query` / `encode_document` route.

Checkpoints (every SAVE_STEPS steps: one file, written atomically, with the query encoder's weights
and the optimizer as tensors loaded with weights_only) let a killed run resume; a changed config or
changed data starts over."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llmr.base.encoders import default_dtype, resolve_encoder
from llmr.base.files import publish, temp_beside
from llmr.base.progress import progress_bar
from llmr.data.schema import CandidateList, Passage
from llmr.training.fit import SAVE_STEPS, data_fingerprint, open_checkpoints, save_model
from llmr.training.groups import training_groups

if TYPE_CHECKING:
    from llmr.training.retriever import RetrieverConfig


def train_query_side(
    candidates: Sequence[CandidateList],
    passages: Mapping[str, Passage],
    out: Path,
    config: RetrieverConfig,
    save_steps: int = SAVE_STEPS,
    on_step: Callable[[int], None] | None = None,
) -> Path:
    """Train the query side on teacher-scored lists and save the Router to `out`; `on_step(step)` after
    each optimizer step (benchmarks time it)."""
    import torch
    import torch.nn.functional as F
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Router
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(config.seed)
    groups = [(c.query, g) for c, g in training_groups(candidates, config.epochs, config.groups, passages)]
    if not groups:
        raise ValueError("no usable training query: every query lacks a positive above -100 or is held out")
    per_epoch = len(groups) // config.epochs
    order = []  # shuffled within each epoch, seeded
    for e in range(config.epochs):
        block = list(range(e * per_epoch, (e + 1) * per_epoch))
        random.Random(config.seed + e).shuffle(block)
        order += block
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]

    doc_ids = sorted({d for _, g in groups for d in g.doc_ids})
    rows = [[q, g.doc_ids, g.scores] for q, g in groups] + [passages[d].contents for d in doc_ids]
    checkpoints = open_checkpoints(out, config, data_fingerprint(rows))
    base = resolve_encoder(config.model)
    documents = SentenceTransformer(base)
    documents.max_seq_length = config.document_max_length
    row = {d: i for i, d in enumerate(doc_ids)}
    saved_pool = checkpoints / "pool.npy"
    if saved_pool.exists():
        pool = np.load(saved_pool, allow_pickle=False)
    else:
        pool = documents.encode_document(
            [passages[d].contents for d in doc_ids], batch_size=64, normalize_embeddings=True, show_progress_bar=False
        )
        tmp = temp_beside(saved_pool)
        with open(tmp, "wb") as fh:
            np.save(fh, pool, allow_pickle=False)
        os.replace(tmp, saved_pool)
    pool_vecs = torch.from_numpy(np.asarray(pool, dtype=np.float32))

    queries = SentenceTransformer(base)
    queries.max_seq_length = config.max_length
    # The base encoder's query embeddings, the anchor's targets: computed once, before any training step.
    texts = list(dict.fromkeys(text for text, _ in groups))
    anchor_row = {text: i for i, text in enumerate(texts)}
    anchors = torch.from_numpy(queries.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True))
    queries.train()
    optimizer = torch.optim.AdamW(queries.parameters(), lr=config.learning_rate)
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, len(batches) // 10), len(batches))
    start = 0
    if (checkpoints / "state.pt").exists():
        state = torch.load(checkpoints / "state.pt", weights_only=True)
        queries.load_state_dict(state["weights"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        start = int(state["step"])
        torch.set_rng_state(state["rng"])  # dropout draws as an unbroken run would
    bf16 = config.bf16 if config.bf16 is not None else default_dtype("cpu") == torch.bfloat16
    log = []
    with progress_bar("steps") as bar:
        task = bar.add_task("query-side distillation", total=len(batches), completed=start)
        for step in range(start, len(batches)):
            batch = [groups[i] for i in batches[step]]
            features = queries.preprocess([q for q, _ in batch])
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                q = queries(features)["sentence_embedding"]
            q = F.normalize(q.float(), dim=-1)
            docs = pool_vecs[torch.tensor([[row[d] for d in g.doc_ids] for _, g in batch])]  # (B, G, D)
            labels = torch.tensor([g.scores for _, g in batch], dtype=torch.float32)
            student = torch.einsum("bd,bgd->bg", q, docs) / config.temperature
            loss = F.kl_div(torch.log_softmax(student, -1), torch.softmax(labels, -1), reduction="batchmean")
            if config.contrastive_weight:
                size = docs.shape[1]
                every = q @ docs.reshape(-1, docs.shape[-1]).T / config.temperature  # (B, B * G)
                positives = torch.arange(len(batch)) * size  # each query's doc_1
                loss = loss + config.contrastive_weight * F.cross_entropy(every, positives)
            if config.anchor_weight:
                anchor = anchors[torch.tensor([anchor_row[text] for text, _ in batch])]
                loss = loss + config.anchor_weight * (1 - (q * anchor).sum(-1)).mean()
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            log.append({"step": step + 1, "loss": float(loss.detach())})
            bar.update(task, advance=1)
            if on_step:
                on_step(step + 1)
            if (step + 1) % save_steps == 0 and step + 1 < len(batches):
                state = {
                    "weights": queries.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "step": step + 1,
                    "rng": torch.get_rng_state(),
                }
                tmp = temp_beside(checkpoints / "state.pt")
                torch.save(state, tmp)
                os.replace(tmp, checkpoints / "state.pt")  # a kill mid-save keeps the previous checkpoint

    queries.eval()
    router = Router.for_query_document(list(queries.children()), list(documents.children()))
    model = SentenceTransformer(modules=[router])
    publish(out, partial(save_model, model, config, log[:: max(1, len(log) // 100)]))
    return out
