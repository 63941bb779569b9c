"""Stage 4 of LLM-R: the teacher scores the candidates of every training query for distillation.

The LLM scores a few queries; the reward model spreads that signal cheaply over many more queries
and candidates (the paper: ~591k queries x up to 100 candidates). Teachers:
- "reward": the reward model's logit for every candidate (the paper);
- "reward+penalties": the same, but candidates the scoring heuristics penalize (another task's, or
  for classification another label's) keep -100 without a model call, as in the LLM's own feedback;
- "penalties": 0 or -100 from the heuristics alone, no model (an ablation: what the labels alone teach);
- "llm": the LLM's own scores, no reward model: the lists `llmr score` wrote (so only the queries the
  LLM scored), cut to their first `top_n` candidates (the pipeline's teacher stage reads them);
- "llm+penalties": the LLM's own lists where it scored the query (any mode, all the candidates it
  scored), the penalties on every other mined query: the LLM's order added to the labels-only teacher.
Model scores go to a SQLite cache keyed by the reward model's weights, its number format and the pair,
committed in chunks: a killed run resumes without rescoring. The model runs in bf16 where the hardware
computes it natively (~2x on AVX-512 BF16 CPUs; benchmarks/training_speed.py measures how often bf16
orders a query's candidates as fp32 does), else fp32.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

from llmr.base.encoders import default_dtype
from llmr.base.files import file_fingerprint
from llmr.base.runtime import ExportedModel, Runtime, export_folder
from llmr.data.schema import PENALTY, CandidateList, Passage
from llmr.llm.base import Score
from llmr.scoring.cache import ScoreCache, pair_key
from llmr.scoring.feedback import ScoringConfig, penalized
from llmr.training.reward import query_text

Teacher = Literal["reward", "reward+penalties", "penalties", "llm", "llm+penalties"]
TEACHERS: tuple[str, ...] = ("reward", "reward+penalties", "penalties", "llm", "llm+penalties")


def teacher_scores(
    candidates: Sequence[CandidateList],
    passages: Mapping[str, Passage],
    teacher: Teacher = "reward+penalties",
    model_dir: Path | str | None = None,
    top_n: int = 0,
    penalties: ScoringConfig = ScoringConfig(),
    cache: ScoreCache | None = None,
    batch_size: int = 64,
    chunk_pairs: int = 2048,
    on_pairs: Callable[[int], None] | None = None,
    runtime: Runtime = "torch",
    llm_lists: Sequence[CandidateList] = (),
) -> tuple[list[CandidateList], dict[str, Any]]:
    """Candidate lists (each cut to its first `top_n` candidates; 0 = all) with the teacher's scores as
    doc_scores, and counts (pairs, cached, scored). `on_pairs(n)` reports progress. `llm_lists`: the
    LLM's scored lists, for "llm+penalties"."""
    if teacher not in TEACHERS:
        raise ValueError(f"teacher must be one of {', '.join(TEACHERS)}, not {teacher!r}")
    if teacher == "llm+penalties":
        if not llm_lists:
            raise ValueError("teacher 'llm+penalties' needs the LLM's scored lists (`llmr score`)")
        labels, stats = teacher_scores(candidates, passages, "penalties", top_n=top_n, penalties=penalties)
        by_id = {c.query_id: c for c in llm_lists}
        seen = {c.query_id for c in labels}
        return [by_id.get(c.query_id, c) for c in labels] + [c for c in llm_lists if c.query_id not in seen], {
            **stats,
            "llm_lists": len(by_id),
        }
    lists = [
        c.model_copy(update={"doc_ids": c.doc_ids[:top_n], "doc_scores": c.doc_scores[:top_n]}) if top_n else c
        for c in candidates
    ]
    if teacher == "llm":  # the lists are the LLM's scored ones: their scores are the teacher's
        return lists, {"pairs": 0, "cached": 0, "scored": 0}
    # Per list and candidate: the pair the model scores, or None for a penalty.
    slots: list[list[tuple[str, str] | None]] = []
    for cands in lists:
        q = query_text(cands)
        slots.append(
            [
                None if teacher != "reward" and penalized(cands, passages[d], penalties) else (q, passages[d].contents)
                for d in cands.doc_ids
            ]
        )
    pairs = {pair_key(*p): p for row in slots for p in row if p is not None}
    stats: dict[str, Any] = {"pairs": len(pairs), "cached": 0, "scored": 0}
    found: dict[str, Score] = {}
    if teacher != "penalties" and pairs:
        if model_dir is None:
            raise ValueError(f"teacher {teacher!r} needs the reward model's folder")
        found = _model_scores(Path(model_dir), pairs, cache, batch_size, chunk_pairs, stats, on_pairs, runtime)
    out = []
    for cands, row in zip(lists, slots, strict=True):
        scores = [PENALTY if p is None else (found[pair_key(*p)].logprob if found else 0.0) for p in row]
        out.append(cands.model_copy(update={"doc_scores": scores}))
    return out, stats


def _model_scores(
    model_dir: Path,
    pairs: Mapping[str, tuple[str, str]],
    cache: ScoreCache | None,
    batch_size: int,
    chunk_pairs: int,
    stats: dict[str, Any],
    on_pairs: Callable[[int], None] | None,
    runtime: Runtime = "torch",
) -> dict[str, Score]:
    """The reward model's logit per pair (stored as Score(logit, 0)), from the cache or computed chunk by chunk
    (in torch, bf16 where the hardware has it; or in another runtime, fp32 or int8)."""
    import torch

    weights = file_fingerprint(model_dir / "model.safetensors")
    fingerprint = "reward-logit:" + weights
    if runtime == "torch":
        dtype = default_dtype("cuda" if torch.cuda.is_available() else "cpu")
        if dtype != torch.float32:
            fingerprint += f":{str(dtype).removeprefix('torch.')}"
        stats["dtype"] = str(dtype).removeprefix("torch.")
    else:
        fingerprint += f"|{runtime}"
        stats["runtime"] = runtime
    keys = sorted(pairs, key=lambda k: (-len(pairs[k][0]) - len(pairs[k][1]), k))  # similar lengths batch well
    found = cache.get_many(fingerprint, keys) if cache else {}
    stats["cached"] = len(found)
    if on_pairs and found:
        on_pairs(len(found))
    missing = [k for k in keys if k not in found]
    if not missing:
        return found
    if runtime == "torch":
        from sentence_transformers.cross_encoder import CrossEncoder

        model = CrossEncoder(str(model_dir), model_kwargs={"torch_dtype": dtype})
        predict = partial(  # logits, also from a model saved with the sigmoid default
            model.predict, batch_size=batch_size, show_progress_bar=False, activation_fn=torch.nn.Identity()
        )
    else:
        exported = ExportedModel(export_folder(str(model_dir), weights, "cross", runtime == "onnx-int8"), runtime)
        predict = lambda items: exported(items, batch_size)[:, 0]  # noqa: E731
    for start in range(0, len(missing), chunk_pairs):
        chunk = missing[start : start + chunk_pairs]
        logits = predict([pairs[k] for k in chunk])
        scored = {k: Score(float(s), 0) for k, s in zip(chunk, logits, strict=True)}
        if cache:
            cache.put_many(fingerprint, scored.items())
        found.update(scored)
        stats["scored"] += len(chunk)
        if on_pairs:
            on_pairs(len(chunk))
    return found
