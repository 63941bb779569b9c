"""Headroom of the LLM's feedback (issue 32): show each test query the top k of its candidates by an LLM
signal computed WITH the gold answer (an oracle), and measure how noisy each signal is.

    python benchmarks/quality/oracle.py --data runs/qdata --out runs/oracle --per-task 20 \\
        --signals answer,margin,query --noise-per-task 5 --noise answer,margin,query,fp32

For a seeded sample of test queries (`--per-task` per task; a subset of the study's test queries), the
candidates are the top 16 same-task pool items, BM25 and dense (MiniLM) interleaved. Each signal
(`llmr score --signal`) scores all 16; `<signal>` shows the top k by it, `<signal>|label` first drops a
classification candidate with another label (the paper's -100), then orders by it. `label` is the label
oracle: dense's order with same-label candidates first. `cone` is the test-time reranker (no gold).
Rows for llmr come from a study's recorded per-query outcomes (`--recorded FILE:METHOD`), on the same queries.

Noise: the same signal scored a second time with other batches (bf16: batches change scores; chunk
size 64 instead of 256), or other sampled contexts (kshot), or in fp32 (`fp32`, the answer signal):
the share of candidate pairs that the two scorings order alike (ties left out), per query, averaged,
and how often the top k is the same set. Everything is cached (LLM scores and outcomes): rerun to resume.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from llmr.base.files import write_json, write_text
from llmr.data.build import select_records
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl, write_jsonl
from llmr.data.schema import PENALTY, CandidateList, Record, same_label
from llmr.evaluation import EvalSettings, OutcomeCache, evaluate_methods
from llmr.evaluation.metrics import paired_bootstrap, task_score
from llmr.evaluation.report import MODES
from llmr.evaluation.rerank import RERANK_TOP_N, Interleaved
from llmr.evaluation.selectors import make_selector
from llmr.llm import load_llm
from llmr.scoring.cache import ScoreCache
from llmr.scoring.feedback import ScoringConfig, make_jobs, score_to_file
from llmr.tasks import TASKS

K = 4


def write_candidates(
    data: DataDir, tasks: str | None, per_task: int, out: Path, index_dir: Path
) -> list[CandidateList]:
    """The sampled test queries, each with its top 16 candidates (BM25 and dense interleaved)."""
    records = select_records(list(data.records("test")), tasks, per_task, seed=0)
    path = out / "candidates.jsonl.gz"
    if not path.exists():
        passages = list(data.passages())
        union = Interleaved(make_selector("bm25", passages), make_selector("dense", passages, index_dir=index_dir))
        chosen = union.select_many(records, RERANK_TOP_N)
        lists = [
            CandidateList(
                **r.model_dump(), doc_ids=[e.passage.id for e in ex], doc_scores=[-float(i) for i in range(len(ex))]
            )
            for r, ex in zip(records, chosen, strict=True)
        ]
        write_jsonl(path, lists)
    return list(read_jsonl(path, CandidateList))


def write_label_oracle(data: DataDir, records: list[Record], out: Path, index_dir: Path) -> Path:
    """Dense's top 40, classification candidates of the query's label first (each group in dense order)."""
    path = out / "label.jsonl.gz"
    if not path.exists():
        passages = list(data.passages())
        dense = make_selector("dense", passages, index_dir=index_dir)
        lists = []
        for r, ex in zip(records, dense.select_many(records, 40), strict=True):
            score = [(PENALTY if same_label(r, e.passage) is False else 0.0) - i for i, e in enumerate(ex)]
            lists.append(CandidateList(**r.model_dump(), doc_ids=[e.passage.id for e in ex], doc_scores=score))
        write_jsonl(path, lists)
    return path


def _scores(signal: str, record: Record) -> bool:
    """Whether the signal is scored for this query (margin: classification and multiple choice only)."""
    return signal != "margin" or TASKS[record.task_name].mode != "gen"


def score_signal(llm, records, passages, config: ScoringConfig, path: Path, cache: ScoreCache) -> dict:
    start = time.perf_counter()
    stats = score_to_file(make_jobs(records, passages, config), llm, cache, config, path)
    return {**stats, "seconds": time.perf_counter() - start}


def agreement(a: list[CandidateList], b: list[CandidateList], k: int = K) -> dict[str, float]:
    """Share of candidate pairs two scorings order alike (ties and penalized candidates left out), per
    query, averaged; and the share of queries whose top k is the same set."""
    pair_shares, same_top = [], []
    by_id = {c.query_id: c for c in b}
    for x in a:
        y = by_id[x.query_id]
        assert x.doc_ids == y.doc_ids
        kept = [i for i, s in enumerate(x.doc_scores) if s > PENALTY / 2]
        agree = total = 0
        for i, j in itertools.combinations(kept, 2):
            dx, dy = x.doc_scores[i] - x.doc_scores[j], y.doc_scores[i] - y.doc_scores[j]
            if dx and dy:
                total += 1
                agree += (dx > 0) == (dy > 0)
        if total:
            pair_shares.append(agree / total)
        if len(kept) > k:
            tops = [set(sorted(kept, key=lambda i, s=s: -s.doc_scores[i])[:k]) for s in (x, y)]
            same_top.append(tops[0] == tops[1])
    return {
        "pair_agreement": float(np.mean(pair_shares)),
        "same_top_k": float(np.mean(same_top)),
        "queries": len(pair_shares),
    }


def load_recorded(spec: str, ids: set[str]) -> tuple[str, list[dict]]:
    """FILE:METHOD[=NAME]: a method's outcomes in an `outcomes.py export` file, on these queries."""
    path, method = spec.rsplit(":", 1)
    method, _, shown = method.partition("=")
    with gzip.open(path, "rt") as f:
        runs = json.load(f)
    name = method if method in runs else f"{method}@k4s0"
    return shown or method, [o for o in runs[name] if o["query_id"] in ids]


def _paired(runs: dict[str, list[dict]]) -> dict[str, dict[str, list[dict]]]:
    """method -> task -> outcomes in query-id order: the same queries line up for a paired bootstrap."""
    by_task: dict[str, dict[str, list[dict]]] = {m: defaultdict(list) for m in runs}
    for m, outs in runs.items():
        for o in outs:
            by_task[m][o["task"]].append(o)
    return {m: {t: sorted(v, key=lambda o: o["query_id"]) for t, v in by_task[m].items()} for m in runs}


def table(runs: dict[str, list[dict]], references: tuple[str, ...] = ("bm25", "dense")) -> str:
    """Per method: the average over tasks per mode and overall, and paired-bootstrap CIs vs the references."""
    order = _paired(runs)
    tasks = sorted(set.intersection(*(set(v) for v in order.values())))
    groups = {"all": tasks, **{mode: [t for t in tasks if TASKS[t].mode == mode] for mode in MODES}}
    head = "| method | " + " | ".join(groups) + " | " + " | ".join(f"− {r} (all)" for r in references) + " |"
    lines = [head, "|" + "---|" * (2 + len(groups) + len(references) - 1)]
    for m in runs:
        cells = [f"{np.mean([task_score(TASKS[t], order[m][t]) for t in ts]):.1f}" for ts in groups.values()]
        for ref in references:
            if ref == m or ref not in runs:
                cells.append("")
                continue
            ci = paired_bootstrap({t: order[m][t] for t in tasks}, {t: order[ref][t] for t in tasks})
            cells.append(f"{ci['difference']:+.1f} [{ci['low']:+.1f}, {ci['high']:+.1f}]")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    n = sum(len(order[next(iter(runs))][t]) for t in tasks)
    return "\n".join(lines) + f"\n\n{n} test queries, {len(tasks)} tasks; the average is over tasks.\n"


def mode_table(runs: dict[str, list[dict]], ref: str = "dense") -> str:
    """Each method minus `ref` per task mode, with paired-bootstrap CIs."""
    order = _paired(runs)
    lines = [f"| method | {' | '.join(f'{mode} − {ref}' for mode in MODES)} |", "|---|" + "---|" * len(MODES)]
    for m in runs:
        if m == ref:
            continue
        cells = []
        for mode in MODES:
            ts = [t for t in order[ref] if TASKS[t].mode == mode and t in order[m]]
            ci = paired_bootstrap({t: order[m][t] for t in ts}, {t: order[ref][t] for t in ts})
            cells.append(f"{ci['difference']:+.1f} [{ci['low']:+.1f}, {ci['high']:+.1f}]")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def export(runs: dict[str, list[dict]], path: Path) -> None:
    """Per-query outcomes in `outcomes.py export`'s format, to keep beside RESULTS.md."""
    keep = ("query_id", "task", "score", "prediction", "gold")
    with gzip.open(path, "wt") as f:
        json.dump({f"{m}@k{K}s0": [{k: o[k] for k in keep if k in o} for o in outs] for m, outs in runs.items()}, f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("runs/qdata"))
    ap.add_argument("--out", type=Path, default=Path("runs/oracle"))
    ap.add_argument("--per-task", type=int, default=20)
    ap.add_argument("--tasks", default=None, help="only these tasks (default: all in the data)")
    ap.add_argument("--signals", default="answer,margin,query")
    ap.add_argument("--noise-per-task", type=int, default=5)
    ap.add_argument("--noise", default="answer,margin,query,fp32")
    ap.add_argument(
        "--subsample",
        default="",
        help="costly signals scored on a nested subsample, SIGNAL=PER_TASK (e.g. query=5,kshot=3); their oracles "
        "are evaluated on it",
    )
    ap.add_argument("--cone", action="store_true", help="also evaluate the test-time ConE reranker")
    ap.add_argument("--recorded", action="append", default=[], help="FILE:METHOD[=NAME]: recorded study outcomes")
    ap.add_argument("--skip-eval", action="store_true")
    args = ap.parse_args()
    out, data = args.out, DataDir(args.data)
    out.mkdir(parents=True, exist_ok=True)
    index_dir = out / "index"
    records = write_candidates(data, args.tasks, args.per_task, out, index_dir)
    passages = {p.id: p for p in data.passages()}
    cache = ScoreCache(out / "scores.sqlite")
    llm = load_llm("gemma-3-270m")
    report: dict = {"llm": llm.fingerprint, "queries": len(records), "signals": {}, "noise": {}}
    known = json.loads((out / "oracle.json").read_text()) if (out / "oracle.json").exists() else {}
    base = ScoringConfig(n_candidates=RERANK_TOP_N, penalize_label_mismatch=False, seed=0)
    signals = [s for s in args.signals.split(",") if s]
    small = {name: int(n) for name, _, n in (x.partition("=") for x in args.subsample.split(",") if x)}
    files: dict[str, Path] = {}
    for signal in signals:
        subset = [r for r in records if _scores(signal, r)]
        if signal in small:
            subset = select_records(subset, None, small[signal], seed=0)
        config = ScoringConfig(**{**base.__dict__, "signal": signal})
        files[signal] = out / f"{signal}.jsonl.gz"
        stats = score_signal(llm, subset, passages, config, files[signal], cache)
        if signal == "margin":  # a generation query's margin is its answer signal: take those lists from there
            scored = list(read_jsonl(files[signal], CandidateList))
            gen = [c for c in read_jsonl(files["answer"], CandidateList) if not _scores("margin", c)]
            write_jsonl(files[signal], scored + gen)
        before = known.get("signals", {}).get(signal, {})  # a rerun finds the scores cached: keep the first time
        report["signals"][signal] = before if before.get("seconds", 0) > stats["seconds"] else stats
        within = ScoringConfig(**{**config.__dict__, "penalize_label_mismatch": True})
        files[f"{signal}|label"] = out / f"{signal}-label.jsonl.gz"
        score_signal(llm, subset, passages, within, files[f"{signal}|label"], cache)  # its pairs: all cached
        if signal == "margin":
            write_jsonl(files[f"{signal}|label"], [*read_jsonl(files[f"{signal}|label"], CandidateList), *gen])
        print(signal, report["signals"][signal], flush=True)
    # Test-retest noise on a nested subsample.
    noisy = select_records(records, None, args.noise_per_task, seed=0)
    noisy_ids = {r.query_id for r in noisy}
    for name in [n for n in args.noise.split(",") if n]:
        signal = "answer" if name == "fp32" else name
        if signal not in files:
            continue
        first = [c for c in read_jsonl(files[signal], CandidateList) if c.query_id in noisy_ids and _scores(signal, c)]
        subset = [r for r in records if r.query_id in {c.query_id for c in first}]
        config = ScoringConfig(**{**base.__dict__, "signal": signal})
        if name == "fp32":
            scorer = load_llm("gemma-3-270m", dtype="fp32")
        else:
            scorer = llm
            config = ScoringConfig(**{**config.__dict__, "chunk_pairs": 64, "seed": 1 if signal == "kshot" else 0})
        path = out / f"retest-{name}.jsonl.gz"
        stats = score_signal(scorer, subset, passages, config, path, cache)
        again = list(read_jsonl(path, CandidateList))
        seconds = max(stats["seconds"], known.get("noise", {}).get(name, {}).get("seconds", 0))
        report["noise"][name] = {**agreement(first, again), "seconds": seconds}
        print("noise", name, report["noise"][name], flush=True)
    for a, b in itertools.combinations([s for s in signals if s not in small], 2):
        x, y = list(read_jsonl(files[a], CandidateList)), list(read_jsonl(files[b], CandidateList))
        report["noise"][f"{a} vs {b}"] = agreement(x, y)
    write_json(out / "oracle.json", report)
    if args.skip_eval:
        return
    records = [Record(**r.model_dump(exclude={"doc_ids", "doc_scores"})) for r in records]
    label = write_label_oracle(data, records, out, index_dir)
    specs = ["bm25", "dense"] + [f"{n}:{p}" for n, p in files.items() if "|" not in n and n not in small]
    # The label filters change only classification queries' examples: elsewhere they are their base method.
    within = {"label": ("dense", label)} | {n: (n.split("|")[0], p) for n, p in files.items() if n.endswith("|label")}
    within = {n: v for n, v in within.items() if n.split("|")[0] not in small}
    settings = EvalSettings(budget_tokens=1024, max_new_tokens=48)
    outcomes = OutcomeCache(out / "outcomes.sqlite")
    started = time.perf_counter()
    runs, seconds = evaluate_methods(
        llm, specs, list(passages.values()), records, [K], [0], outcomes, settings, index_dir
    )
    results = {m: o for (m, _, _), o in runs.items()}
    cls = [r for r in records if TASKS[r.task_name].mode == "cls"]
    cls_runs, cls_seconds = evaluate_methods(
        llm,
        [f"{n}:{p}" for n, (_, p) in within.items()],
        list(passages.values()),
        cls,
        [K],
        [0],
        outcomes,
        settings,
        index_dir,
    )
    for name, (base_method, _) in within.items():
        replaced = {o["query_id"]: o for o in cls_runs[name, K, 0]}
        results[name] = [replaced.get(o["query_id"], o) for o in results[base_method]]
    seconds |= cls_seconds
    report["eval_seconds"] = seconds
    ids = {r.query_id for r in records}
    checks = []
    for spec in args.recorded:
        name, found = load_recorded(spec, ids)
        if name in results:  # a baseline run here and in the study: do the outcomes reproduce?
            mine = {o["query_id"]: o["score"] for o in results[name]}
            same = sum(mine[o["query_id"]] == o["score"] for o in found)
            checks.append(f"- {name}: {same} of {len(found)} outcomes as recorded in {spec.rsplit(':', 1)[0]}")
        elif len(found) == len(ids):
            results[name] = found
    text = "# Oracle: the top 4 of 16 same-task candidates by each LLM signal\n\n" + table(results)
    text += "\n".join(checks) + "\n\nPer task mode, against dense:\n\n" + mode_table(results)
    export(results, out / "outcomes.json.gz")
    on_subsample: dict[str, list[dict]] = {}
    for signal in [x for x in signals if x in small]:
        sub = {r.query_id for r in select_records(records, None, small[signal], seed=0)}
        specs = [f"{signal}:{files[signal]}", f"{signal}|label:{files[f'{signal}|label']}"]
        specs += ["cone"] if signal == "query" and args.cone else []  # the same ranking, scored at test time
        sub_runs, sub_seconds = evaluate_methods(
            llm,
            specs,
            list(passages.values()),
            [r for r in records if r.query_id in sub],
            [K],
            [0],
            outcomes,
            settings,
            index_dir,
        )
        seconds |= sub_seconds
        sub_results = {m: [o for o in outs if o["query_id"] in sub] for m, outs in results.items()}
        sub_results |= {m: o for (m, _, _), o in sub_runs.items()}
        on_subsample |= {m: o for (m, _, _), o in sub_runs.items()}
        text += f"\n## On the {signal} subsample ({small[signal]} per task)\n\n" + table(sub_results)
    # The oracles scored twice: how much does the noise move their accuracy?
    retests = {
        n: out / f"retest-{n}.jsonl.gz" for n in args.noise.split(",") if (out / f"retest-{n}.jsonl.gz").exists()
    }
    if retests:
        noisy_records = [r for r in records if r.query_id in noisy_ids]
        specs = []
        for name, path in retests.items():
            if name == "margin":  # scored on cls and mc only: generation queries keep the answer signal's lists
                merged = out / "retest-margin-all.jsonl.gz"
                gen = [c for c in read_jsonl(files["margin"], CandidateList) if c.query_id in noisy_ids]
                write_jsonl(merged, [*read_jsonl(path, CandidateList), *(c for c in gen if not _scores("margin", c))])
                path = merged
            specs.append(f"{'answer in fp32' if name == 'fp32' else name + ' again'}:{path}")
        again_runs, again_seconds = evaluate_methods(
            llm, specs, list(passages.values()), noisy_records, [K], [0], outcomes, settings, index_dir
        )
        seconds |= again_seconds
        base = ["bm25", "dense", *dict.fromkeys("answer" if n == "fp32" else n for n in retests)]
        both = results | on_subsample  # the subsample signals' outcomes hold the noise subsample's queries
        sub_results = {m: [o for o in both[m] if o["query_id"] in noisy_ids] for m in base}
        sub_results |= {m: o for (m, _, _), o in again_runs.items()}
        text += "\n## The oracles scored twice (noise subsample)\n\n" + table(sub_results)
    text += "\n## Noise (test-retest) and agreement between signals\n\n"
    text += "| scorings | pair agreement | same top 4 | queries |\n|---|---|---|---|\n"
    for name, n in report["noise"].items():
        text += f"| {name} | {n['pair_agreement']:.3f} | {n['same_top_k']:.3f} | {n['queries']} |\n"
    text += "\n## LLM time\n\n" + "\n".join(
        f"- {s}: {v['pairs']:,} pairs for {v['queries']} queries, {v['seconds'] / 60:.1f} min "
        f"({v['seconds'] / v['queries']:.2f} s per query)"
        for s, v in report["signals"].items()
    )
    spent = ", ".join(f"{m} {s / 60:.1f} min" for m, s in seconds.items())
    text += f"\n- evaluation: {spent} ({(time.perf_counter() - started) / 60:.0f} min in all)\n"
    write_json(out / "oracle.json", report)
    write_text(out / "oracle.md", text)
    print(text)


if __name__ == "__main__":
    main()
