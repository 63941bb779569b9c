"""Stage 2 of LLM-R: the frozen LLM scores each candidate example for its query.

What the score is (`signal`):
- answer (the paper's): mean log p(answer | candidate + "\\n\\n" + query + "\\n") over the answer's tokens;
- margin: for classification and multiple choice, log p(gold) - max log p(other answer) after the same
  prompt (label words summed, options averaged, as the evaluator ranks them); generation: as answer;
- kshot: answer's score with the candidate inside k-shot prompts, averaged over a few sampled sets of the
  query's other candidates (the same sets for every candidate of a query, so candidates are compared
  in the same contexts);
- query: mean log p(query | candidate): how much the candidate lowers the LLM's surprise at the test
  input (ConE); it needs no gold answer, so it can also rerank at test time.
Optional heuristics of the paper give -100 without asking the LLM: candidates from another task,
and, for classification tasks, candidates whose label differs from the query's.

Work is split into fixed chunks of unique (context, answer) pairs; each chunk is scored and
committed to the score cache as one transaction. A killed run resumes at the first missing chunk,
and since chunks (and so batches) are the same on every run, it writes the same output.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmr.base.progress import progress_bar
from llmr.base.settings import check_bounds, setting
from llmr.data.build import select_records
from llmr.data.jsonl import write_jsonl
from llmr.data.schema import PENALTY, CandidateList, Passage, Record, answer_text, same_label
from llmr.distributed.engine import Engine, as_engine
from llmr.llm.base import LLM, Score
from llmr.prompt import build_prompt
from llmr.scoring.cache import ScoreCache, pair_key
from llmr.tasks import TASKS

SIGNALS = ("answer", "margin", "kshot", "query")
MARGIN = "\x00margin:"  # marks a margin pair's continuation (a generation query's pairs score its answer)


@dataclass(frozen=True)
class ScoringConfig:
    n_candidates: int = setting(32, "M: candidates sampled per query (the paper: 32; 8-16 keeps CPU runs short).", ge=1)
    seed: int = setting(42, "Seed of the per-query candidate sample and of max_per_task.")
    penalize_other_task: bool = setting(True, "Score candidates from another task -100 (no LLM call).")
    penalize_label_mismatch: bool = setting(
        True, "Classification: score candidates whose label differs from the query's -100 (no LLM call)."
    )
    chunk_pairs: int = setting(256, "Pairs per committed chunk: the most work a kill can lose.", ge=1)
    # Nested in any larger sample of the same seed, so they are among the queries the teacher scores.
    max_per_task: int = setting(0, "Queries per task the LLM scores, a seeded sample (0 = all).", ge=0)
    signal: str = setting(
        "answer",
        "What a candidate's score is: answer (mean log p(answer | candidate, query), the paper), margin "
        "(cls/mc: log p(gold) - max log p(other answer)), kshot (answer inside k-shot prompts of sampled "
        "other candidates) or query (mean log p(query | candidate): ConE, no gold needed).",
    )
    kshot_k: int = setting(4, "kshot: examples per prompt (the candidate and k-1 others).", ge=2)
    kshot_contexts: int = setting(2, "kshot: sampled sets of the other k-1 candidates per query.", ge=1)

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.signal not in SIGNALS:
            raise ValueError(f"signal = {self.signal!r}: must be one of {', '.join(SIGNALS)}")


Pair = tuple[str, str]  # (context, continuation): what one LLM call scores


def settings_key(config: ScoringConfig) -> dict[str, Any]:
    """The settings an output's key holds; the signal's only when not the paper's, so older outputs keep theirs."""
    settings = asdict(config)
    if config.signal == "answer":
        for name in ("signal", "kshot_k", "kshot_contexts"):
            settings.pop(name)
    return settings


@dataclass
class Job:
    """One query: the sampled candidates, and per candidate the pairs whose scores average into its score
    (None if penalized)."""

    record: CandidateList
    doc_ids: list[str]
    pairs: list[list[Pair] | None]


def sample_doc_ids(cands: CandidateList, m: int, seed: int) -> list[str]:
    """M of the query's candidates, seeded per query, kept in retrieval order."""
    n = len(cands.doc_ids)
    if n <= m:
        return list(cands.doc_ids)
    chosen = sorted(random.Random(f"{seed}:{cands.query_id}").sample(range(n), m))
    return [cands.doc_ids[i] for i in chosen]


def penalized(cands: CandidateList, doc: Passage, config: ScoringConfig) -> bool:
    """The paper's heuristics: a candidate of another task, or (classification) with another label,
    is worth -100 without asking the LLM."""
    if doc.task_name != cands.task_name:
        return config.penalize_other_task
    return config.penalize_label_mismatch and same_label(cands, doc) is False


def margin_target(record: Record) -> str | None:
    """The continuation a margin pair scores: the gold answer and the others, as JSON (None: generation)."""
    task = TASKS.get(record.task_name)
    if task is None or task.mode == "gen":
        return None
    if task.mode == "cls":
        answers, gold = list(task.label_words), record.answers[0]
    else:
        answers, gold = list(record.options), answer_text(record, task)
    return MARGIN + json.dumps({"gold": gold, "others": [a for a in answers if a != gold], "mean": task.mode == "mc"})


def query_pair(contents: str, query: str) -> Pair:
    """The query signal's pair: the query scored after the candidate (ConE; no gold answer)."""
    return f"{contents}\n\n", query


def candidate_pairs(record: Record, kept: Sequence[Passage], config: ScoringConfig) -> list[list[Pair]]:
    """Per kept candidate, the pairs the LLM scores for it under `config.signal`."""
    if config.signal == "query":
        return [[query_pair(doc.contents, record.query)] for doc in kept]
    target = margin_target(record) if config.signal == "margin" else None
    answer = target or answer_text(record)
    if config.signal != "kshot" or len(kept) < 2:
        return [[(build_prompt([doc.contents], record.query), answer)] for doc in kept]
    # Every candidate is scored in the same sampled contexts (the others at the same positions), so
    # their scores differ by the candidate alone; a context holding the candidate is skipped for it.
    pairs: list[list[Pair]] = [[] for _ in kept]
    size = min(config.kshot_k - 1, len(kept) - 1)
    for s in range(config.kshot_contexts):
        rng = random.Random(f"{config.seed}:{record.query_id}:kshot:{s}")
        others = rng.sample(range(len(kept)), size)
        position = rng.randrange(size + 1)
        for i, doc in enumerate(kept):
            if i in others:
                continue
            shown = [kept[j].contents for j in others]
            shown.insert(position, doc.contents)
            pairs[i].append((build_prompt(shown, record.query), answer))
    for i, doc in enumerate(kept):  # in every context (only when few candidates): score it alone
        if not pairs[i]:
            pairs[i].append((build_prompt([doc.contents], record.query), answer))
    return pairs


def make_jobs(candidates: Iterable[CandidateList], passages: Mapping[str, Passage], config: ScoringConfig) -> list[Job]:
    jobs = []
    for cands in select_records(list(candidates), None, config.max_per_task, config.seed):
        doc_ids = sample_doc_ids(cands, config.n_candidates, config.seed)
        docs = []
        for doc_id in doc_ids:
            try:
                docs.append(passages[doc_id])
            except KeyError:
                raise KeyError(f"query {cands.query_id}: candidate {doc_id!r} is not in the pool") from None
        dropped = [penalized(cands, doc, config) for doc in docs]
        scored = iter(candidate_pairs(cands, [d for d, off in zip(docs, dropped, strict=True) if not off], config))
        jobs.append(Job(cands, doc_ids, [None if off else next(scored) for off in dropped]))
    return jobs


def unique_pairs(jobs: Sequence[Job]) -> dict[str, Pair]:
    found: dict[str, Pair] = {}
    for job in jobs:
        for pairs in job.pairs:
            for pair in pairs or ():
                found.setdefault(pair_key(*pair), pair)
    return found


def chunks(pairs: Mapping[str, tuple[str, str]], size: int) -> list[list[str]]:
    """Fixed chunks of similar length (longest first), the same for the same set of pairs."""
    keys = sorted(pairs, key=lambda k: (-len(pairs[k][0]) - len(pairs[k][1]), k))
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def score_pairs(llm: LLM, contexts: Sequence[str], continuations: Sequence[str]) -> list[Score]:
    """`llm.score`, except that a margin pair is log p(gold) - max log p(other answer), one Score of one token."""
    margin = [i for i, c in enumerate(continuations) if c.startswith(MARGIN)]
    plain = [i for i, c in enumerate(continuations) if not c.startswith(MARGIN)]
    out: list[Score | None] = [None] * len(contexts)
    if plain:
        for i, s in zip(plain, llm.score([contexts[i] for i in plain], [continuations[i] for i in plain]), strict=True):
            out[i] = s
    if margin:
        parsed = [json.loads(continuations[i].removeprefix(MARGIN)) for i in margin]
        scored = llm.score_options([contexts[i] for i in margin], [[t["gold"], *t["others"]] for t in parsed])
        for i, t, scores in zip(margin, parsed, scored, strict=True):
            values = [s.mean if t["mean"] else s.logprob for s in scores]
            out[i] = Score(values[0] - max(values[1:], default=0.0), 1)
    return out  # type: ignore[return-value]


def score_chunk(llm: LLM, work: tuple[list[str], list[str]]) -> tuple[list[Score], int]:
    before = llm.tokens_processed
    scores = score_pairs(llm, *work)
    return scores, llm.tokens_processed - before


def cache_namespace(llm_fingerprint: str, config: ScoringConfig) -> str:
    """Where a run's scores live in the cache: the LLM, the signal and the chunking. The pairs batched
    together change a pair's score in low precision (hf bf16: up to 0.19 nats; fp32: 1e-5;
    benchmarks/RESULTS.md), so a chunk is scored whole and a score is read back only by runs that chunk as
    it was chunked. (The paper's signal keeps the namespace it had before signals were options.)"""
    signal = "" if config.signal == "answer" else f"|signal={config.signal}"
    return f"{llm_fingerprint}|chunk_pairs={config.chunk_pairs}{signal}"


def run_scoring(
    jobs: Sequence[Job],
    llm: LLM | Engine,
    cache: ScoreCache,
    config: ScoringConfig,
    on_chunk: Callable[[int, int], None] | None = None,
) -> dict[str, int]:
    """Score every chunk of pairs the cache lacks (a chunk with any pair missing is scored whole: the
    batches of a clean run). on_chunk(pairs, tokens) reports progress.

    With a `RayEngine` the chunks run on its actors, each committed here as it arrives: the same
    chunks, so the same batches and the same scores as a local run.
    """
    engine = as_engine(llm)
    namespace = cache_namespace(engine.fingerprint, config)
    pairs = unique_pairs(jobs)
    stats = {"pairs": len(pairs), "cached": 0, "scored": 0}
    todo = []
    for chunk in chunks(pairs, config.chunk_pairs):
        if len(cache.get_many(namespace, chunk)) < len(chunk):
            todo.append(chunk)
        else:
            stats["cached"] += len(chunk)
            if on_chunk:
                on_chunk(len(chunk), 0)
    work = (([pairs[k][0] for k in keys], [pairs[k][1] for k in keys]) for keys in todo)
    for i, (scores, tokens) in engine.map(score_chunk, work):
        cache.put_many(namespace, zip(todo[i], scores, strict=True))
        stats["scored"] += len(todo[i])
        if on_chunk:
            on_chunk(len(todo[i]), tokens)
    return stats


def collect(jobs: Sequence[Job], namespace: str, cache: ScoreCache) -> Iterator[CandidateList]:
    """The scored candidate lists, read back from the cache (doc_scores = the signal, averaged over a
    candidate's pairs, or -100); `namespace`: `cache_namespace(llm.fingerprint, config)` of the run that
    scored them."""
    for job in jobs:
        keys = [pair_key(*p) for pairs in job.pairs for p in pairs or ()]
        found = cache.get_many(namespace, keys)
        scores = []
        for pairs in job.pairs:
            if pairs is None:
                scores.append(PENALTY)
                continue
            values = [found.get(pair_key(*p)) for p in pairs]
            if None in values:
                raise RuntimeError(f"query {job.record.query_id}: a pair has no cached score; run scoring first")
            scores.append(sum(v.mean for v in values) / len(values))  # type: ignore[union-attr]
        fields = job.record.model_dump(exclude={"doc_ids", "doc_scores"})
        yield CandidateList(**fields, doc_ids=job.doc_ids, doc_scores=scores)


def plan(
    jobs: Sequence[Job],
    llm: LLM,
    cache: ScoreCache,
    config: ScoringConfig,
    calibration_pairs: int = 128,
    seed: int = 0,
) -> dict[str, Any]:
    """Count the work left and time a short calibration batch on this backend to estimate its duration."""
    pairs = unique_pairs(jobs)
    cached = cache.get_many(cache_namespace(llm.fingerprint, config), list(pairs))
    missing = [k for k in pairs if k not in cached]
    tokens = llm.count_tokens([pairs[k][0] + pairs[k][1] for k in missing])
    slots = sum(len(j.pairs) for j in jobs)
    report: dict[str, Any] = {
        "queries": len(jobs),
        "candidates": slots,
        "penalized": sum(p is None for j in jobs for p in j.pairs),
        "signal": config.signal,
        "unique_pairs": len(pairs),
        "cached_pairs": len(cached),
        "pairs_to_score": len(missing),
        "tokens_to_score": sum(tokens),
    }
    if missing:
        sample = random.Random(seed).sample(range(len(missing)), min(calibration_pairs, len(missing)))
        ctx = [pairs[missing[i]][0] for i in sample]
        cont = [pairs[missing[i]][1] for i in sample]
        score_chunk(llm, (ctx[:16], cont[:16]))  # warm-up: allocation and kernel selection
        start, before = time.perf_counter(), llm.tokens_processed
        score_chunk(llm, (ctx, cont))  # not cached: the real run must batch them its own way
        elapsed = time.perf_counter() - start
        rate = (llm.tokens_processed - before) / elapsed
        report.update(calibration_tokens_per_s=rate, estimated_seconds=report["tokens_to_score"] / rate)
    else:
        report.update(calibration_tokens_per_s=None, estimated_seconds=0.0)
    return report


def score_to_file(
    jobs: Sequence[Job], llm: LLM | Engine, cache: ScoreCache, config: ScoringConfig, out: Path | str
) -> dict[str, int]:
    """Score with a progress bar (pairs/s, tokens/s, ETA), then write the scored lists atomically to `out`."""
    engine = as_engine(llm)
    with progress_bar("pairs", extra_rate="tokens") as bar:
        task = bar.add_task("scoring", total=len(unique_pairs(jobs)), tokens=0)

        def advance(n_pairs: int, n_tokens: int) -> None:
            bar.update(task, advance=n_pairs, tokens=bar.tasks[task].fields["tokens"] + n_tokens)

        stats = run_scoring(jobs, engine, cache, config, on_chunk=advance)
    stats["queries"] = write_jsonl(out, collect(jobs, cache_namespace(engine.fingerprint, config), cache))
    return stats
