"""Why does (or doesn't) the learned retriever beat BM25? Evidence from a finished `llmr study` folder.

    python benchmarks/quality/diagnose.py runs/quality

Prints markdown tables (no model is run; everything is read from the study's files):
1. How much the LLM's scores separate candidates: per iteration, the share of candidates that get the
   fixed penalty (another task's, or another label's for classification) and the spread (best -
   worst mean token log-prob) among the rest of a query's candidates.
2. What each stage learned, on held-back training queries: reward model vs LLM, retriever vs reward
   model, and the initial encoder vs the reward model (pairwise ordering agreement; chance 0.5);
   and whether each scorer puts the candidates the LLM feedback keeps above the penalized ones
   (the label signal: the query's own task and its gold label).
3. What each selector shows the LLM at test time: the share of shown examples from the query's own
   task, and on classification tasks the share whose label equals the gold label, against accuracy.
   Gemma-3-270M largely copies its demonstrations' labels (../shared/notes/stack.md).
4. With `--select METHOD ...`: the same shares for any selectors (e.g. `dense llmr:<retriever folder>`)
   on held-back training queries (never trained on), before any LLM call: a cheap check of a retriever.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from statistics import mean

from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl
from llmr.data.schema import PENALTY, CandidateList, Passage
from llmr.tasks import TASKS


def label_of(contents: str) -> str:
    return contents.rpartition("\n")[2]  # a pool item is "query\nanswer"


def llm_signal(study: Path) -> list[str]:
    lines = [
        "| iteration | queries | candidates penalized (other task / other label) | score spread among the rest "
        "(median, nats per token) |",
        "|---|---:|---:|---:|",
    ]
    for scores in sorted(study.glob("pipeline/iteration-*/score-*/scores.jsonl.gz")):
        lists = list(read_jsonl(scores, CandidateList))
        penalized = [s <= PENALTY for c in lists for s in c.doc_scores]
        spreads = sorted(
            max(kept) - min(kept) for c in lists if len(kept := [s for s in c.doc_scores if s > PENALTY]) > 1
        )
        spread = f"{spreads[len(spreads) // 2]:.2f} (n = {len(spreads)})" if spreads else "—"
        lines.append(f"| {scores.parent.parent.name} | {len(lists)} | {100 * mean(penalized):.0f}% | {spread} |")
    return lines


def agreements(study: Path) -> list[str]:
    lines = [
        "| stage | held-back queries | agreement (kept candidates) | with penalized too | initial encoder |",
        "|---|---:|---:|---:|---:|",
    ]
    order = {"reward": 0, "retriever": 1, "epr": 2}
    markers = [m for m in study.glob("pipeline/iteration-*/*/stage.json") if m.parent.name.split("-")[0] in order]
    for marker in sorted(markers, key=lambda m: (m.parent.parent.name, order[m.parent.name.split("-")[0]])):
        report = json.loads(marker.read_text()).get("report", {})
        stage = f"{marker.parent.parent.name}/{marker.parent.name.rsplit('-', 1)[0]}"
        if "agreement_with_llm" in report:
            lines.append(
                f"| {stage}: reward model vs LLM | {report['held_back_queries']} | "
                f"{_num(report['agreement_with_llm'])} | {_num(report.get('agreement_with_llm_all'))} | |"
            )
        if "agreement_with_teacher" in report:
            lines.append(
                f"| {stage} vs teacher | | {_num(report['agreement_with_teacher'])} | | "
                f"{_num(report['initial_agreement_with_teacher'])} |"
            )
    return lines


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def penalty_agreement(study: Path, pool: dict[str, Passage]) -> list[str]:
    """On held-back queries: how often a scorer puts a candidate the LLM feedback keeps above one it penalizes
    (another task's, or another label's). The agreement above skips penalized candidates; this is the rest."""
    from llmr.pipeline.runner import held_back
    from llmr.training.agreement import kept_above_penalized, retriever_similarities

    config = json.loads((study / "pipeline" / "manifest.json").read_text())["config"]
    lines = ["| iteration | scorer | held-back queries | kept above penalized |", "|---|---|---:|---:|"]
    for scores in sorted(study.glob("pipeline/iteration-*/score-*/scores.jsonl.gz")):
        iteration = scores.parent.parent
        held = [
            c
            for c in read_jsonl(scores, CandidateList)
            if held_back(c.query_id, config["validation_fraction"], config["seed"])
        ]
        scorers = {}
        teacher = next(iteration.glob("teacher-*/teacher.jsonl.gz"), None)
        if teacher:
            by_id = {c.query_id: c.doc_scores for c in read_jsonl(teacher, CandidateList)}
            scorers["teacher"] = by_id
        for name, folder in (("initial encoder", config["retriever"]["model"]), ("retriever", None), ("epr", None)):
            if folder is None:
                folder = next((str(f) for f in iteration.glob(f"{name}-*") if (f / "stage.json").exists()), None)
            if folder:
                scorers[name] = retriever_similarities(folder, held, pool)
        for name, predicted in scorers.items():
            share = kept_above_penalized(held, predicted)
            lines.append(f"| {iteration.name} | {name} | {len(held)} | {'—' if share is None else f'{share:.3f}'} |")
    return lines


def shares(task: str, gold: str, shown: list[tuple[str, str]]) -> tuple[float | None, float | None]:
    """Of the shown (task, contents) examples: the share from the query's task, and (classification)
    the share of those whose label is the gold one; None where it does not apply."""
    if not shown:
        return None, None
    mine = [contents for t, contents in shown if t == task]
    if TASKS[task].mode != "cls" or not mine:
        return mean(t == task for t, _ in shown), None
    return mean(t == task for t, _ in shown), mean(label_of(c) == gold for c in mine)


def shown_examples(study: Path, pool: dict[str, str]) -> list[str]:
    stats: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for o in read_jsonl(study / "eval" / "explanations.jsonl.gz"):
        s = stats[o["method"], o["k"]]
        s["score"].append(o["score"])
        shown = [(e["task"], pool[e["id"]]) for e in o["examples"]]
        same_task, gold = shares(o["task"], o["gold"], shown)
        if same_task is not None:
            s["same_task"].append(same_task)
        if TASKS[o["task"]].mode == "cls":
            s["cls_correct"].append(o["score"])
            same = [e for e in o["examples"] if e["task"] == o["task"]]
            if gold is not None:
                s["gold_label"].append(gold)
                s["majority_gold"].append(
                    float(max(set(labels := [label_of(pool[e["id"]]) for e in same]), key=labels.count) == o["gold"])
                )
    lines = [
        "| method | k | shown examples from the query's task | cls: shown labels = gold | "
        "cls: majority label = gold | cls accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def pct(values: list[float]) -> str:
        return f"{100 * mean(values):.1f}" if values else "—"

    for (method, k), s in stats.items():
        lines.append(
            f"| {method} | {k} | {pct(s['same_task'])} | {pct(s['gold_label'])} | {pct(s['majority_gold'])} "
            f"| {pct(s['cls_correct'])} |"
        )
    return lines


def selection_preview(study: Path, data: Path, methods: list[str], per_task: int, k: int) -> list[str]:
    """What each selector would show on up to `per_task` held-back training queries of each trained task."""
    from llmr.data.build import select_records
    from llmr.evaluation.selectors import make_selector
    from llmr.pipeline.runner import held_back

    config = json.loads((study / "pipeline" / "manifest.json").read_text())["config"]
    data_dir = DataDir(data)
    passages = list(data_dir.passages())
    in_pool = {p.id for p in passages}  # pool and training queries are drawn from the same split
    held = [
        r
        for r in data_dir.records("train")
        if r.query_id not in in_pool
        and not TASKS[r.task_name].held_out
        and held_back(r.query_id, config["validation_fraction"], config["seed"])
    ]
    queries = select_records(held, None, per_task, config["seed"])
    lines = [
        f"| method | queries | shown examples from the query's task | cls: shown labels = gold (k = {k}) |",
        "|---|---:|---:|---:|",
    ]
    for spec in methods:
        selector = make_selector(spec, passages, index_dir=study / "pipeline" / "index")
        found = [
            shares(q.task_name, q.answers[0], [(e.passage.task_name, e.passage.contents) for e in shown])
            for q, shown in zip(queries, selector.select_many(queries, k), strict=True)
        ]
        same_task = [t for t, _ in found if t is not None]
        gold = [g for _, g in found if g is not None]
        lines.append(f"| {spec} | {len(queries)} | {100 * mean(same_task):.1f} | {100 * mean(gold):.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="A `llmr study` output folder.")
    parser.add_argument("--select", nargs="+", metavar="METHOD", help="Only preview these selectors (section 4).")
    parser.add_argument("--per-task", type=int, default=40, help="Held-back queries per task for --select.")
    args = parser.parse_args()
    study = args.study
    scores = next(study.glob("pipeline/iteration-1/score-*/stage.json"))
    data = study / "pipeline" / f"data-{json.loads(scores.read_text())['inputs']['data']}"
    passages = {p.id: p for p in DataDir(data).passages()}
    if args.select:
        lines = selection_preview(study, data, args.select, args.per_task, k=4)
        print("### What the selectors would show (held-back training queries)\n\n" + "\n".join(lines))
        return
    pool = {i: p.contents for i, p in passages.items()}
    for title, lines in (
        ("LLM feedback", llm_signal(study)),
        ("Agreement on held-back training queries (pairwise order; chance 0.5)", agreements(study)),
        ("Kept vs penalized candidates on held-back queries (chance 0.5)", penalty_agreement(study, passages)),
        ("What the selectors show the LLM", shown_examples(study, pool)),
    ):
        print(f"### {title}\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
