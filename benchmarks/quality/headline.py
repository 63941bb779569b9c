"""The headline numbers as data: headline.json, and RESULTS.md's headline table written from it.

`llmr study` writes `<out>/eval/headline.json` (and `eval.headline`'s copy). For studies that ran before it
did, the same file is made from their recorded per-query outcomes (`outcomes.py export`):

    python benchmarks/quality/headline.py from-outcomes benchmarks/quality/outcomes-2026-12-06-confirm.json.gz \\
        bm25 dense pen1000clsgen=llmr -o benchmarks/quality/headline.json
    U=benchmarks/quality/outcomes-2026-12-06-unseen.json.gz
    python benchmarks/quality/headline.py add benchmarks/quality/headline.json "unseen: llmr - dense" $U:llmr-1 $U:dense
    python benchmarks/quality/headline.py table benchmarks/quality/headline.json benchmarks/RESULTS.md

`add` records a difference between two runs' outcomes (paired on the queries both hold), overall and, with
--per-mode, per task mode, keyed like the study's own ("llm teacher - labels teacher", "cls: ...").

`table` replaces what lies between `<!-- headline:begin -->` and `<!-- headline:end -->` in the markdown file.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from llmr.base.files import write_json, write_text
from llmr.evaluation.report import MODES, aggregate, headline

BEGIN, END = "<!-- headline:begin -->", "<!-- headline:end -->"
K = 4


def from_outcomes(path: Path, methods: list[str], resamples: int = 1000) -> dict:
    """headline.json's fields from an outcomes export: METHOD[=NAME] for each method, on the queries all hold."""
    with gzip.open(path, "rt") as f:
        recorded = json.load(f)
    runs = {}
    for spec in methods:
        method, _, name = spec.partition("=")
        key = method if method in recorded else f"{method}@k{K}s0"
        runs[name or method] = {(o["task"], o["query_id"]): o for o in recorded[key]}
    shared = sorted(set.intersection(*(set(r) for r in runs.values())))
    paired = {(name, K, 0): [outs[q] for q in shared] for name, outs in runs.items()}
    results = aggregate(paired, resamples)  # each method against bm25, and those after dense against dense
    return {**headline(results, K), "source": str(path)}


def add(headline_json: Path, name: str, a_spec: str, b_spec: str, per_mode: bool) -> None:
    from outcomes import paired  # benchmarks/quality/outcomes.py, beside this script

    top = json.loads(headline_json.read_text())
    for mode, (ci, _) in paired(a_spec, b_spec).items():
        if mode == "all" or per_mode:
            key = name if mode == "all" else f"{mode}: {name}"
            top["differences"][key] = [round(ci[k], 2) for k in ("difference", "low", "high")]
    write_json(headline_json, top)


def table(top: dict) -> str:
    """The headline table: averages per mode, then each difference with its CI."""
    cols = ["all", *MODES, "unseen"]
    cols = [c for c in cols if any(c in v for v in top["methods"].values())]
    names = {"all": "average", **MODES}
    lines = [f"{top['test_queries']:,} test queries, {top['tasks']} tasks, k = {top['k']}.", ""]
    lines += ["| method | " + " | ".join(names.get(c, c) for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for m, v in top["methods"].items():
        lines.append(f"| {m} | " + " | ".join(f"{v[c]:.1f}" if c in v else "—" for c in cols) + " |")
    lines += ["", "| difference | estimate | 95% CI (paired bootstrap) |", "|---|---:|---|"]
    for name, (estimate, low, high) in sorted(top["differences"].items(), key=lambda d: (":" in d[0], d[0])):
        lines.append(f"| {name} | {estimate:+.1f} | [{low:+.1f}, {high:+.1f}] |")
    return "\n".join(lines)


def write_table(headline_json: Path, markdown: Path) -> None:
    text = markdown.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    write_text(markdown, text[:start] + "\n" + table(json.loads(headline_json.read_text())) + "\n" + text[end:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("from-outcomes")
    a.add_argument("outcomes", type=Path)
    a.add_argument("methods", nargs="+", help="METHOD[=NAME]")
    a.add_argument("-o", "--out", type=Path, required=True)
    d = sub.add_parser("add")
    d.add_argument("headline", type=Path)
    d.add_argument("name", help='e.g. "llm teacher - labels teacher"')
    d.add_argument("a", help="OUTCOMES.json.gz:METHOD")
    d.add_argument("b", help="OUTCOMES.json.gz:METHOD")
    d.add_argument("--per-mode", action="store_true")
    t = sub.add_parser("table")
    t.add_argument("headline", type=Path)
    t.add_argument("markdown", type=Path)
    args = ap.parse_args()
    if args.command == "from-outcomes":
        write_json(args.out, from_outcomes(args.outcomes, args.methods))
    elif args.command == "add":
        add(args.headline, args.name, args.a, args.b, args.per_mode)
    else:
        write_table(args.headline, args.markdown)


if __name__ == "__main__":
    main()
