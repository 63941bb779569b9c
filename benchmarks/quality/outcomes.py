"""Keep a study's per-query outcomes in the repository, and compare methods of different runs.

Run folders do not outlive a machine; a paired bootstrap needs each method's outcome on the same
queries. `export` writes the few fields the metrics need (no prompt or data text) from an evaluation
folder; `compare` gives the paired-bootstrap CI of A - B over the queries both files hold.

    python benchmarks/quality/outcomes.py export runs/prior/eval benchmarks/quality/outcomes-2026-12-06.json.gz
    python benchmarks/quality/outcomes.py compare OUT.json.gz:llmr-2 OLD.json.gz:bm25
    python benchmarks/quality/outcomes.py compare BIG.json.gz:pen1000 BIG.json.gz:bm25 SMALL.json.gz:bm25

A third file leaves out the queries it holds: a variant chosen on SMALL's queries is then compared on
queries that played no part in choosing it.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections import defaultdict
from pathlib import Path

from llmr.data.jsonl import read_jsonl
from llmr.evaluation.metrics import metric_for, paired_bootstrap
from llmr.evaluation.report import MODES
from llmr.tasks import TASKS

KEEP = ("query_id", "task", "score")
CORPUS = ("prediction", "gold")  # what a corpus metric (multirc's F1 over label words) recomputes from


def export(eval_dir: Path, out: Path) -> None:
    by_method: dict[str, list[dict]] = defaultdict(list)
    for row in read_jsonl(eval_dir / "explanations.jsonl.gz"):
        corpus = metric_for(TASKS[row["task"]]).corpus
        keep = {k: row[k] for k in KEEP + (CORPUS if corpus else ())}
        by_method[f"{row['method']}@k{row['k']}s{row['seed']}"].append(keep)
    with gzip.open(out, "wt") as f:
        json.dump(by_method, f)
    print(f"{out}: {', '.join(f'{m} ({len(v)})' for m, v in by_method.items())}")


def _load(spec: str) -> dict[str, dict[str, dict]]:
    path, method = spec.rsplit(":", 1)
    with gzip.open(path, "rt") as f:
        runs = json.load(f)
    name = method if method in runs else f"{method}@k4s0"
    by_task: dict[str, dict[str, dict]] = defaultdict(dict)
    for o in runs[name]:
        by_task[o["task"]][o["query_id"]] = o
    return by_task


def paired(a_spec: str, b_spec: str, without_spec: str | None = None) -> dict[str, tuple[dict, int]]:
    """A - B's paired-bootstrap CI and query count, over all tasks ("all") and per mode, on the queries
    both files hold (less those of `without_spec`)."""
    a, b = _load(a_spec), _load(b_spec)
    without = _load(without_spec) if without_spec else {}
    paired_a, paired_b = {}, {}
    for task in sorted(set(a) & set(b)):
        ids = sorted(set(a[task]) & set(b[task]) - set(without.get(task, ())))
        if ids:
            paired_a[task], paired_b[task] = [a[task][i] for i in ids], [b[task][i] for i in ids]
    out = {}
    for mode in ["all", *MODES]:  # as study.md: the average, then each mode's
        tasks = [t for t in paired_a if mode == "all" or TASKS[t].mode == mode]
        if tasks:
            ci = paired_bootstrap({t: paired_a[t] for t in tasks}, {t: paired_b[t] for t in tasks})
            out[mode] = (ci, sum(len(paired_a[t]) for t in tasks))
    return out


def compare(a_spec: str, b_spec: str, without_spec: str | None = None) -> None:
    print(f"{a_spec} - {b_spec}" + (f", without the queries of {without_spec}:" if without_spec else ":"))
    cis = paired(a_spec, b_spec, without_spec)
    if not cis:
        print("  no query in both files (and not left out)")
    for mode, (ci, n) in cis.items():
        label = "all tasks" if mode == "all" else MODES[mode]
        print(f"  {label}: {ci['difference']:+.1f} [{ci['low']:+.1f}, {ci['high']:+.1f}] ({n} paired queries)")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"export": lambda: export(Path(args[0]), Path(args[1])), "compare": lambda: compare(*args)}[command]()
