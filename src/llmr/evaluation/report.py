"""Evaluation reports: results.json, a markdown table, PNG plots, and per-query explanations."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmr.base.files import temp_beside, write_json, write_text
from llmr.data.jsonl import write_jsonl
from llmr.evaluation.metrics import metric_for, paired_bootstrap, summarize, task_score
from llmr.tasks import CATEGORIES, TASKS

# (method, k, seed) -> that run's outcomes, one per query, the same queries in the same order for every run
Runs = Mapping[tuple[str, int, int], Sequence[Mapping[str, Any]]]
REFERENCES = ("random", "bm25")  # every other method gets a paired CI of its difference to these
MODES = {"cls": "classification", "mc": "multiple-choice", "gen": "generation"}


def _by_task(outcomes: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    found: dict[str, list[Mapping[str, Any]]] = {}
    for o in outcomes:
        found.setdefault(o["task"], []).append(o)
    return found


def _cis(
    pooled: Mapping[str, Mapping[str, list]], pairs: Sequence[tuple[str, str]], tasks: Sequence[str], n_resamples: int
) -> dict[str, dict[str, float]]:
    """Paired-bootstrap CI of each (method - reference) over the average of `tasks`."""
    return {
        f"{m} - {ref}": paired_bootstrap(
            {t: pooled[m][t] for t in tasks}, {t: pooled[ref][t] for t in tasks}, n_resamples=n_resamples
        )
        for m, ref in pairs
    }


def aggregate(
    runs: Runs,
    n_resamples: int = 1000,
    held_out: Collection[str] = (),
    compare: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Per k: task scores per method (mean over seeds), category/overall/held-out means, paired CIs (each
    method against random, BM25 and dense, and the `compare` pairs). Held out: the paper's held-out tasks
    and `held_out` (a leave-tasks-out study's unseen tasks)."""
    methods = list(dict.fromkeys(m for m, _, _ in runs))
    ks = sorted({k for _, k, _ in runs})
    seeds = sorted({s for _, _, s in runs})
    results: dict[str, Any] = {"methods": methods, "ks": ks, "seeds": seeds, "held_out": sorted(held_out), "by_k": {}}
    for k in ks:
        per_task: dict[str, dict[str, float]] = {}
        pooled: dict[str, dict[str, list]] = {}  # method -> task -> outcomes over all seeds (paired order)
        for m in methods:
            scores: dict[str, list[float]] = {}
            pooled[m] = {}
            for seed in seeds:
                for task, outs in _by_task(runs[m, k, seed]).items():
                    scores.setdefault(task, []).append(task_score(TASKS[task], outs))
                    pooled[m].setdefault(task, []).extend(outs)
            per_task[m] = {t: float(np.mean(v)) for t, v in scores.items()}
        pairs = [(m, ref) for ref in REFERENCES if ref in methods for m in methods if m != ref]
        if "dense" in methods:  # the learned retrievers start from the dense encoder: do they beat it?
            pairs += [(m, "dense") for m in methods[methods.index("dense") + 1 :]]
        pairs += [pair for pair in compare if pair not in pairs]

        tasks = list(pooled[methods[0]])
        held = [t for t in tasks if TASKS[t].held_out or t in held_out]  # unseen tasks, if present
        modes = {m: [t for t in tasks if TASKS[t].mode == m] for m in MODES}
        modes = {m: ts for m, ts in modes.items() if ts}
        first = runs[methods[0], k, seeds[0]]
        results["by_k"][str(k)] = {
            "queries": {t: len(o) for t, o in _by_task(first).items()},
            "per_task": per_task,
            "summary": {m: summarize(per_task[m], held_out) for m in methods},
            "ci": _cis(pooled, pairs, tasks, n_resamples),
            "ci_held_out": _cis(pooled, pairs, held, n_resamples) if held else {},
            "ci_by_mode": {m: _cis(pooled, pairs, ts, n_resamples) for m, ts in modes.items()}
            if len(modes) > 1
            else {},
        }
    return results


def markdown(results: Mapping[str, Any]) -> str:
    methods = results["methods"]
    lines: list[str] = []
    for k, block in results["by_k"].items():
        tasks = sorted(block["queries"], key=lambda t: (CATEGORIES.index(TASKS[t].category), t))
        lines += [f"### k = {k} (seeds: {', '.join(map(str, results['seeds']))})", ""]
        lines += ["| task | category | metric | n | " + " | ".join(methods) + " |"]
        lines += ["|---|---|---|---:|" + "---:|" * len(methods)]
        for t in tasks:
            row = [f"{block['per_task'][m].get(t, float('nan')):.1f}" for m in methods]
            spec = TASKS[t]
            name = f"{t} (held out)" if spec.held_out or t in results.get("held_out", ()) else t
            lines.append(
                f"| {name} | {spec.category} | {spec.metric} | {block['queries'][t]} | " + " | ".join(row) + " |"
            )
        keys = [key for key in block["summary"][methods[0]] if key.startswith("category/")]
        keys = sorted(keys, key=lambda c: CATEGORIES.index(c.split("/", 1)[1]))
        keys += [f"mode/{m}" for m in MODES if f"mode/{m}" in block["summary"][methods[0]]]
        keys += [key for key in ("average", "held_out_average") if key in block["summary"][methods[0]]]
        for key in keys:
            kind, _, name = key.partition("/")
            label = {"category": f"{name} (mean)", "mode": f"*{MODES.get(name, name)} tasks (mean)*"}.get(
                kind, f"**{key.replace('_', ' ')}**"
            )
            values = [f"{block['summary'][m][key]:.1f}" for m in methods]
            lines.append(f"| {label} | | | | " + " | ".join(values) + " |")
        subsets = [("all tasks", block["ci"]), ("held-out tasks", block.get("ci_held_out", {}))]
        subsets += [(f"{MODES[m]} tasks", cis) for m, cis in block.get("ci_by_mode", {}).items()]
        for label, cis in subsets:
            if not cis:
                continue
            lines += ["", f"| difference (average over {label}) | estimate | 95% CI (paired bootstrap) |"]
            lines += ["|---|---:|---|"]
            for name, ci in cis.items():
                lines.append(f"| {name} | {ci['difference']:+.1f} | [{ci['low']:+.1f}, {ci['high']:+.1f}] |")
        lines.append("")
    return "\n".join(lines)


def _grouped_bars(labels: list[str], series: Mapping[str, list[float]], title: str, ylabel: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels)), 4))
    for i, (name, values) in enumerate(series.items()):
        ax.bar(np.arange(len(labels)) + i * width, values, width, label=name)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(np.arange(len(labels)) + width * (len(series) - 1) / 2, labels, rotation=25, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, ncols=min(6, len(series)), loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    fig.tight_layout()
    tmp = temp_beside(path)
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def plots(results: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Per k: mean score per category by method, and each method's gain over random per task."""
    methods = results["methods"]
    written = []
    for k, block in results["by_k"].items():
        summary, per_task = block["summary"], block["per_task"]
        keys = [f"category/{c}" for c in CATEGORIES if f"category/{c}" in summary[methods[0]]] + ["average"]
        written.append(
            _grouped_bars(
                [key.removeprefix("category/") for key in keys],
                {m: [summary[m][key] for key in keys] for m in methods},
                f"in-context score by category, k = {k}",
                "score",
                out_dir / f"categories_k{k}.png",
            )
        )
        if "random" in methods:
            tasks = sorted(block["queries"])
            written.append(
                _grouped_bars(
                    tasks,
                    {m: [per_task[m][t] - per_task["random"][t] for t in tasks] for m in methods if m != "random"},
                    f"gain over random examples per task, k = {k}",
                    "score - random",
                    out_dir / f"gain_over_random_k{k}.png",
                )
            )
    return written


def headline(results: Mapping[str, Any], k: int, aliases: Mapping[str, str] = {}) -> dict[str, Any]:
    """The numbers a reader quotes, machine-readable: the test query count, each method's average per task
    mode and overall (and over the held-out tasks), and every paired difference as [estimate, low, high],
    keyed "a - b" overall, "<mode>: a - b" per mode and "unseen: a - b" over the held-out tasks.
    `aliases` renames methods (e.g. {"llmr-1": "llmr"})."""
    block = results["by_k"][str(k)]

    def name(method: str) -> str:
        return aliases.get(method, method)

    def renamed(pair: str) -> str:
        a, _, b = pair.partition(" - ")
        return f"{name(a)} - {name(b)}"

    out: dict[str, Any] = {"k": k, "test_queries": sum(block["queries"].values()), "tasks": len(block["queries"])}
    fields = {"average": "all", **{f"mode/{m}": m for m in MODES}, "held_out_average": "unseen"}
    out["methods"] = {
        name(m): {label: round(v[key], 2) for key, label in fields.items() if key in v}
        for m, v in block["summary"].items()
    }
    diffs: dict[str, list[float]] = {}
    groups = [("", block["ci"]), *((f"{m}: ", cis) for m, cis in block["ci_by_mode"].items())]
    groups.append(("unseen: ", block["ci_held_out"]))
    for prefix, cis in groups:
        for pair, ci in cis.items():
            diffs[prefix + renamed(pair)] = [round(ci[x], 2) for x in ("difference", "low", "high")]
    out["differences"] = diffs
    return out


def write_report(
    runs: Runs,
    out_dir: Path,
    n_resamples: int = 1000,
    held_out: Collection[str] = (),
    compare: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """results.json, results.md, the plots, and explanations.jsonl (one line per method, k, seed, query)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = aggregate(runs, n_resamples, held_out, compare)
    write_json(out_dir / "results.json", results)
    write_text(out_dir / "results.md", markdown(results))
    results["plots"] = [p.name for p in plots(results, out_dir)]
    write_jsonl(
        out_dir / "explanations.jsonl.gz",
        (
            {"method": m, "k": k, "seed": s, **o, "correct": _correct(o)}
            for (m, k, s), outs in runs.items()
            for o in outs
        ),
    )
    return results


def _correct(outcome: Mapping[str, Any]) -> bool | None:
    """Right or wrong for label, option and exact-match tasks; None where the score is graded (ROUGE-L)."""
    return None if metric_for(TASKS[outcome["task"]]).graded else outcome["score"] == 1.0


def compare_runs(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], n_resamples: int = 1000) -> list[dict]:
    """Two runs' per-query outcomes (explanations.jsonl rows) -> per k and method pair, A - B on the queries
    both scored (same task, query id and seed): each side's average, a paired-bootstrap CI and per-task scores.
    Pairs: the methods both runs have, or every pair across them where they share none."""

    def index(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int], dict[tuple, Mapping[str, Any]]]:
        found: dict[tuple[str, int], dict[tuple, Mapping[str, Any]]] = {}
        for o in rows:
            found.setdefault((o["method"], o["k"]), {})[o["task"], str(o["query_id"]), o.get("seed", 0)] = o
        return found

    left, right = index(a), index(b)
    ks = sorted({k for _, k in left} & {k for _, k in right})
    ms_a, ms_b = [list(dict.fromkeys(m for m, _ in side)) for side in (left, right)]
    pairs = [(m, m) for m in ms_a if m in ms_b] or [(x, y) for x in ms_a for y in ms_b]
    out = []
    for k in ks:
        for ma, mb in pairs:
            if (ma, k) not in left or (mb, k) not in right:
                continue
            oa, ob = left[ma, k], right[mb, k]
            keys = sorted(oa.keys() & ob.keys(), key=str)
            if not keys:  # seeded differently: pair each run's first seed
                first = [min(key[2] for key in side) for side in (oa, ob)]
                oa = {key: o for key, o in oa.items() if key[2] == first[0]}
                ob = {(*key[:2], first[0]): o for key, o in ob.items() if key[2] == first[1]}  # keyed by A's seed
                keys = sorted(oa.keys() & ob.keys(), key=str)
            if not keys:
                continue
            by_task_a, by_task_b = _by_task([oa[key] for key in keys]), _by_task([ob[key] for key in keys])
            per_task = {
                t: {"n": len(outs), "a": task_score(TASKS[t], outs), "b": task_score(TASKS[t], by_task_b[t])}
                for t, outs in sorted(by_task_a.items())
            }
            ci = paired_bootstrap(by_task_a, by_task_b, n_resamples=n_resamples)
            out.append(
                {
                    "k": k,
                    "a": ma,
                    "b": mb,
                    "queries": len(keys),
                    "score_a": float(np.mean([v["a"] for v in per_task.values()])),
                    "score_b": float(np.mean([v["b"] for v in per_task.values()])),
                    **ci,
                    "per_task": per_task,
                    "outcomes": [(*key, oa[key]["score"], ob[key]["score"]) for key in keys],  # for the download
                }
            )
    return out
