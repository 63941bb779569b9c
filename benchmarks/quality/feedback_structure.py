"""What in the LLM's order could a retriever learn? Pairwise agreement of simple predictors with it.

    python benchmarks/quality/feedback_structure.py runs/feedback/pipeline/iteration-1/score-*/scores.jsonl.gz \
        runs/feedback/pipeline/data-*/passages.jsonl.gz [--encoder all-minilm-l6-v2]

Each predictor orders a query's kept candidates (the LLM's -100s left out, as in training's agreement):
- candidate effect: the candidate's mean score, relative to its list's mean, over the *other* queries
  whose lists hold it (leave-one-query-out). A part of the order a document tower alone could learn.
- shorter first / longer first: the candidate's length in characters.
- mined order: the candidate list's own order (the mining retriever's rank).
- dense: the base encoder's similarity of query and candidate (the retriever's starting point).
Reference points: the LLM against itself rescored (0.955, RESULTS.md "Headroom"), the reward model
(0.56) and the distilled retriever (0.53) on held-back queries.

With `--rerank DIR` (an oracle.py folder), each of its test queries' 16 candidates is ordered by the
candidate effect (from all the LLM's lists; a candidate never scored counts 0, ties keep the list's order),
and the top 4 are evaluated beside the folder's recorded outcomes (its outcomes.json.gz): a test-time
use of the effect, no gold answer needed.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from oracle import mode_table, table  # beside this script, as when it runs

from llmr.base.encoders import Encoder
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl, write_jsonl
from llmr.data.schema import PENALTY, CandidateList, Record
from llmr.evaluation import EvalSettings, OutcomeCache, evaluate_methods
from llmr.llm import load_llm
from llmr.tasks import TASKS
from llmr.training.agreement import pairwise_agreement

Lists = list[dict]
Predictor = Callable[[dict], Sequence[float]]


def centred_scores(lists: Lists) -> dict[str, list[tuple[str, float]]]:
    """Per candidate: (query id, its score minus its list's mean) over the kept candidates of every list."""
    seen: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for row in lists:
        scores = np.asarray(row["doc_scores"], dtype=float)
        kept = scores > PENALTY
        if kept.sum() >= 2:
            for d, s in zip(np.asarray(row["doc_ids"])[kept], scores[kept] - scores[kept].mean(), strict=True):
                seen[str(d)].append((row["query_id"], float(s)))
    return seen


def candidate_effects(lists: Lists) -> Predictor:
    """Leave-one-query-out mean of each candidate's centred score; NaN where a candidate has no other list."""
    seen = centred_scores(lists)

    def predict(row: dict) -> list[float]:
        others = [[s for q, s in seen.get(d, []) if q != row["query_id"]] for d in row["doc_ids"]]
        return [float(np.mean(o)) if o else np.nan for o in others]

    return predict


def agreement_by_mode(lists: Lists, predict: Predictor) -> dict[str, tuple[float, int]]:
    """Micro-averaged agreement per mode and overall, over pairs the predictor can order (no NaN)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in lists:
        ref, p = np.asarray(row["doc_scores"], dtype=float), np.asarray(predict(row), dtype=float)
        known = ~np.isnan(p)
        a, n = pairwise_agreement(ref[known], p[known])
        for key in (TASKS[row["task_name"]].mode, "all"):
            counts[key][0] += a
            counts[key][1] += n
    return {k: (a / n if n else float("nan"), n) for k, (a, n) in counts.items()}


def effect_of_candidates(lists: Lists) -> dict[str, float]:
    """Each candidate's mean centred score over every list that holds it."""
    return {d: float(np.mean([s for _, s in v])) for d, v in centred_scores(lists).items()}


def rerank(lists: Lists, oracle_dir: Path, data: Path) -> None:
    """The oracle folder's candidates ordered by the candidate effect; top 4 evaluated (cached outcomes)."""
    effect = effect_of_candidates(lists)
    rows = []
    covered = total = 0
    for c in read_jsonl(oracle_dir / "candidates.jsonl.gz", CandidateList):
        covered += sum(d in effect for d in c.doc_ids)
        total += len(c.doc_ids)
        scores = [effect.get(d, 0.0) - 1e-6 * i for i, d in enumerate(c.doc_ids)]
        rows.append(c.model_copy(update={"doc_scores": scores}))
    path = oracle_dir / "effect.jsonl.gz"
    write_jsonl(path, rows)
    print(f"{covered / total:.1%} of the test queries' candidates have an effect estimate")
    records = [Record(**r.model_dump(exclude={"doc_ids", "doc_scores"})) for r in rows]
    passages = list(DataDir(data).passages())
    runs, seconds = evaluate_methods(
        load_llm("gemma-3-270m"),
        [f"effect:{path}"],
        passages,
        records,
        [4],
        [0],
        OutcomeCache(oracle_dir / "outcomes.sqlite"),
        EvalSettings(budget_tokens=1024, max_new_tokens=48),
        oracle_dir / "index",
    )
    by_method = {m: outs for (m, _, _), outs in runs.items()}
    with gzip.open(oracle_dir / "outcomes.json.gz", "rt") as f:  # the oracle run's, on the same queries
        recorded = json.load(f)
    for name in ("bm25", "dense", "answer", "margin"):
        by_method[name] = recorded[f"{name}@k4s0"]
    print(table(by_method, references=("dense", "bm25", "answer", "margin")))
    print(mode_table(by_method, "dense"))
    print(f"evaluation seconds: {seconds}")


def dense(lists: Lists, passages: Mapping[str, str], model: str) -> Predictor:
    encoder = Encoder(model)
    docs = sorted({d for r in lists for d in r["doc_ids"]})
    vecs = dict(zip(docs, encoder.encode_documents([passages[d] for d in docs]), strict=True))
    query_vecs = encoder.encode_queries([r["query"] for r in lists])
    queries = dict(zip((r["query_id"] for r in lists), query_vecs, strict=True))
    return lambda row: [float(queries[row["query_id"]] @ vecs[d]) for d in row["doc_ids"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scores")
    ap.add_argument("passages")
    ap.add_argument("--encoder", default=None, help="also the base encoder's similarity (e.g. all-minilm-l6-v2)")
    ap.add_argument("--rerank", type=Path, default=None, help="an oracle.py folder: evaluate the effect's top 4")
    ap.add_argument("--data", type=Path, default=Path("runs/qdata"), help="with --rerank: the data it was built on")
    args = ap.parse_args()
    lists = list(read_jsonl(args.scores))
    if args.rerank:
        rerank(lists, args.rerank, args.data)
        return
    passages = {p["id"]: p["contents"] for p in read_jsonl(args.passages)}
    predictors: dict[str, Predictor] = {
        "candidate effect (leave-one-query-out)": candidate_effects(lists),
        "shorter first": lambda r: [-len(passages[d]) for d in r["doc_ids"]],
        "longer first": lambda r: [len(passages[d]) for d in r["doc_ids"]],
        "mined order": lambda r: [-i for i in range(len(r["doc_ids"]))],
    }
    if args.encoder:
        predictors[f"dense ({args.encoder})"] = dense(lists, passages, args.encoder)
    modes = ["all", "cls", "mc", "gen"]
    print(f"{len(lists)} LLM-scored lists\n")
    print("| predictor | " + " | ".join(modes) + " |")
    print("|---|" + "---:|" * len(modes))
    for name, predict in predictors.items():
        found = agreement_by_mode(lists, predict)
        cells = [f"{found[m][0]:.3f} ({found[m][1]:,})" if m in found else "—" for m in modes]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
