"""`llmr report`: one self-contained HTML page for an eval, pipeline or study folder (no network to view it).

The page: the headline differences with their CIs in words; per-task and per-category tables (each score
with its standard error and query count; EM and F1 where the metric is em_f1); plots with error bars, one
colour per method in every figure; the pipeline's stages (wall time, pairs, agreement on held-back
queries); and an explorer: for a test query, each method's examples, prompt, option log-likelihoods and
prediction, filtered by task and by "methods disagree" (also from the URL: `#task=sst2&disagree=1`).
Everything is read from the files the runs write (results.json, explanations.jsonl.gz, manifest.json).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import string
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmr.base.files import write_text
from llmr.data.jsonl import read_jsonl
from llmr.tasks import CATEGORIES, TASKS

BASELINES = ("zero", "random", "kmeans", "bm25", "dense")
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
EXPLORER_QUERIES = 300  # queries the page carries, spread over the tasks: it stays a few MB


def find_runs(folder: Path) -> tuple[Path | None, Path | None]:
    """(the eval folder, the pipeline manifest) of an eval, pipeline or study folder."""
    evals = [folder] if (folder / "results.json").is_file() else sorted(folder.glob("*/results.json"))
    eval_dir = folder if evals == [folder] else next((p.parent for p in evals if p.parent.name == "eval"), None)
    if eval_dir is None and evals:
        eval_dir = evals[0].parent
    manifest = next((m for m in (folder / "manifest.json", folder / "pipeline" / "manifest.json") if _stages(m)), None)
    if eval_dir is None and manifest is None:
        raise FileNotFoundError(f"{folder}: no results.json (an eval or study) and no pipeline manifest.json")
    return eval_dir, manifest


def _stages(path: Path) -> bool:
    try:
        return "stages" in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


def write_html_report(folder: Path | str, out: Path | str | None = None) -> Path:
    folder = Path(folder)
    eval_dir, manifest = find_runs(folder)
    out = Path(out) if out else folder / "report.html"
    sections, title = [], "llmr report: pipeline"  # never the folder's name: the same run, the same page
    if eval_dir is not None:
        results = json.loads((eval_dir / "results.json").read_text())
        title = f"llmr report: {', '.join(results['methods'])} at k = {', '.join(map(str, results['ks']))}"
        outcomes = (
            list(read_jsonl(eval_dir / "explanations.jsonl.gz"))
            if (eval_dir / "explanations.jsonl.gz").exists()
            else []
        )
        methods = list(results["methods"])
        colours = {m: COLOURS[i % len(COLOURS)] for i, m in enumerate(methods)}
        for k in results["ks"]:
            by_k = results["by_k"][str(k)]
            rows = [o for o in outcomes if o.get("k") == k and o.get("seed", 0) == results["seeds"][0]]
            stats = task_stats(rows, methods, by_k["per_task"])
            sections += [
                f"<h2>k = {k}</h2>",
                summary(by_k, methods),
                legend(methods, colours),
                figure(
                    category_plot(stats, methods, colours, f"categories-k{k}"),
                    "Score per category (mean over its tasks, ±1.96 SE)",
                ),
                figure(difference_plot(by_k["ci"], colours, f"diff-k{k}"), "Paired differences, 95% bootstrap CI"),
                category_table(stats, methods),
                task_table(stats, methods, by_k["queries"]),
            ]
            if k == results["ks"][0]:
                explorer_data = explorer(rows, methods)
    if manifest is not None:
        sections.append(pipeline_section(json.loads(manifest.read_text()), folder))
    page = string.Template((Path(__file__).parent / "report.html").read_text()).substitute(
        title=html.escape(title),
        body="\n".join(sections),
        data=json.dumps(explorer_data if eval_dir is not None else {}).replace("</", "<\\/"),
        colours=json.dumps(colours if eval_dir is not None else {}),
        explorer_note=f"Up to {EXPLORER_QUERIES} test queries, as many per task (those where methods disagree first)",
    )
    write_text(out, page)
    return out


# -- numbers --------------------------------------------------------------------------------------


def task_stats(
    rows: Sequence[Mapping], methods: Sequence[str], per_task: Mapping[str, Mapping[str, float]] | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """task -> method -> {score, se, n, em, f1} in points, from the per-query outcomes; `score` is the run's
    own task score where given (a binary F1 is not a mean over queries; its SE is the per-query one)."""
    values: dict[tuple[str, str], list[Mapping]] = defaultdict(list)
    for o in rows:
        values[o["task"], o["method"]].append(o)
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (task, method), outs in values.items():
        scores = [100 * float(o["score"]) for o in outs]
        entry = {
            "score": (per_task or {}).get(method, {}).get(task, _mean(scores)),
            "se": _se(scores),
            "n": len(scores),
        }
        if TASKS[task].metric == "em_f1":
            entry["em"] = _mean([100 * float(o.get("em", o["score"])) for o in outs])
            entry["f1"] = _mean([100 * float(o.get("f1", o["score"])) for o in outs])
        out[task][method] = entry
    return dict(sorted(out.items()))


def category_stats(
    stats: Mapping[str, Mapping[str, Mapping[str, float]]], method: str
) -> dict[str, tuple[float, float]]:
    """category -> (mean of its tasks' scores, SE of that mean), plus "average" over all tasks."""
    groups: dict[str, list[Mapping[str, float]]] = defaultdict(list)
    for task, by_method in stats.items():
        if method in by_method:
            groups[TASKS[task].category].append(by_method[method])
            groups["average"].append(by_method[method])
    return {
        c: (_mean([e["score"] for e in es]), math.sqrt(sum(e["se"] ** 2 for e in es)) / len(es))
        for c, es in groups.items()
    }


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _se(xs: Sequence[float]) -> float:
    if len(xs) < 2:
        return 0.0
    m = _mean(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1) / len(xs))


# -- sections -------------------------------------------------------------------------------------


def summary(by_k: Mapping[str, Any], methods: Sequence[str]) -> str:
    """The headline: each learned method against BM25, dense and random, in words."""
    lines = []
    for pair, ci in by_k["ci"].items():
        a, _, b = pair.partition(" - ")
        if a in BASELINES or b not in ("bm25", "dense", "random"):
            continue
        d, lo, hi = ci["difference"], ci["low"], ci["high"]
        verdict = "better" if lo > 0 else "worse" if hi < 0 else "not distinguishable from it (the CI includes 0)"
        lines.append(
            f"<li><b>{html.escape(a)}</b> vs {html.escape(b)}: {d:+.1f} points "
            f"(95% CI {lo:+.1f} to {hi:+.1f}): {verdict}</li>"
        )
    averages = ", ".join(
        f"{html.escape(m)} {by_k['summary'][m]['average']:.1f}" for m in methods if m in by_k["summary"]
    )
    n = sum(by_k["queries"].values())
    return (
        f'<div class="summary"><p>Average score over {len(by_k["queries"])} tasks ({n:,} test queries): '
        f"{averages}.</p><ul>{''.join(lines) or '<li>no learned method in this run</li>'}</ul>"
        "<p class=note>Differences: paired bootstrap over the same test queries (mean of task scores).</p></div>"
    )


def legend(methods: Sequence[str], colours: Mapping[str, str]) -> str:
    chips = "".join(f'<span class="chip" style="background:{colours[m]}"></span>{html.escape(m)} ' for m in methods)
    return f'<p class="legend">{chips}</p>'


def category_table(stats: Mapping, methods: Sequence[str]) -> str:
    per = {m: category_stats(stats, m) for m in methods}
    cats = [c for c in (*CATEGORIES, "average") if any(c in per[m] for m in methods)]
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    body = "".join(
        f"<tr><td>{html.escape(c)}</td>"
        + "".join(_cell(*per[m][c]) if c in per[m] else "<td>–</td>" for m in methods)
        + "</tr>"
        for c in cats
    )
    return f"<h3>Per category (± SE)</h3><table class=category><tr><th>category</th>{head}</tr>{body}</table>"


def task_table(stats: Mapping, methods: Sequence[str], queries: Mapping[str, int]) -> str:
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)
    rows = []
    for task, by_method in stats.items():
        cells = []
        for m in methods:
            e = by_method.get(m)
            if e is None:
                cells.append("<td>–</td>")
            elif "em" in e:
                cells.append(f"<td>{e['em']:.1f} / {e['f1']:.1f}<span class=se> EM / F1 ± {e['se']:.1f}</span></td>")
            else:
                cells.append(_cell(e["score"], e["se"]))
        metric = TASKS[task].metric
        n = queries.get(task, max(int(e["n"]) for e in by_method.values()))
        rows.append(f"<tr><td>{html.escape(task)}</td><td>{metric}</td><td>{n}</td>{''.join(cells)}</tr>")
    return (
        "<h3>Per task (± SE over its queries)</h3>"
        f"<table class=tasks><tr><th>task</th><th>metric</th><th>queries</th>{head}</tr>{''.join(rows)}</table>"
    )


def _cell(score: float, se: float) -> str:
    return f"<td>{score:.1f}<span class=se> ± {se:.1f}</span></td>"


def pipeline_section(manifest: Mapping[str, Any], folder: Path) -> str:
    keys = (
        "queries",
        "pairs",
        "scored",
        "agreement_with_llm",
        "kept_above_penalized",
        "agreement_with_teacher",
        "initial_agreement_with_teacher",
        "train_lists",
    )
    rows = []
    for s in manifest["stages"]:
        report = s.get("report", {})
        cells = "".join(
            f"<td>{report[k]:.3f}</td>" if isinstance(report.get(k), float) else f"<td>{report.get(k, '')}</td>"
            for k in keys
        )
        rows.append(f"<tr><td>{html.escape(s['name'])}</td><td>{s.get('seconds', 0):,.0f}</td>{cells}</tr>")
    head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in keys)
    curve = next(iter(sorted(folder.glob("**/learning-curve*.png"))), None)
    img = (
        figure(
            f'<img alt="learning curve" src="data:image/png;base64,{base64.b64encode(curve.read_bytes()).decode()}">',
            "Reward-model learning curve",
        )
        if curve
        else ""
    )
    return (
        "<h2>Pipeline</h2><p>Agreement: how often a model orders held-back queries' candidates as its teacher does "
        "(the reward model against the LLM; the retriever, and the encoder it started from, against the reward model)."
        f"</p><table class=stages><tr><th>stage</th><th>seconds</th>{head}</tr>{''.join(rows)}</table>{img}"
    )


def figure(content: str, caption: str) -> str:
    return f"<figure>{content}<figcaption>{html.escape(caption)}</figcaption></figure>"


# -- plots ----------------------------------------------------------------------------------------


def _svg(fig: Any, name: str) -> str:
    """The figure as inline SVG, byte-stable: no date, and ids hashed from `name` (unique in the page, so two
    figures' clip paths never share an id) instead of a random salt."""
    import matplotlib
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": name}):
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def category_plot(stats: Mapping, methods: Sequence[str], colours: Mapping[str, str], name: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = {m: category_stats(stats, m) for m in methods}
    cats = [c for c in (*CATEGORIES, "average") if any(c in per[m] for m in methods)]
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(cats) * max(1, len(methods)) / 3), 3.6))
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        xs = [j + (i - (len(methods) - 1) / 2) * width for j in range(len(cats))]
        means = [per[m].get(c, (float("nan"), 0))[0] for c in cats]
        errs = [1.96 * per[m].get(c, (0, 0))[1] for c in cats]
        ax.bar(xs, means, width, yerr=errs, capsize=2, color=colours[m], label=m)
    ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right")
    ax.set_ylabel("score")
    ax.legend(fontsize=7, ncol=min(4, len(methods)))
    return _svg(fig, name)


def difference_plot(cis: Mapping[str, Mapping[str, float]], colours: Mapping[str, str], name: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [p for p in cis if p.partition(" - ")[2] in ("bm25", "dense", "random")]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(pairs) + 1))
    for y, pair in enumerate(pairs):
        ci = cis[pair]
        colour = colours.get(pair.partition(" - ")[0], "#333")
        ax.errorbar(
            ci["difference"],
            y,
            xerr=[[ci["difference"] - ci["low"]], [ci["high"] - ci["difference"]]],
            fmt="o",
            color=colour,
            capsize=3,
        )
    ax.axvline(0, color="#999", linewidth=1)
    ax.set_yticks(range(len(pairs)), pairs)
    ax.invert_yaxis()
    ax.set_xlabel("difference in points")
    return _svg(fig, name)


# -- the explorer ---------------------------------------------------------------------------------


def explorer(rows: Sequence[Mapping], methods: Sequence[str]) -> dict[str, Any]:
    """Per query: its task, text and gold answer, and per method what it showed and predicted."""
    queries: dict[str, dict[str, Any]] = {}
    for o in rows:
        q = queries.setdefault(
            o["query_id"], {"task": o["task"], "query": o.get("query", ""), "gold": o.get("gold"), "methods": {}}
        )
        examples = o["examples"]
        if examples and "contents" not in examples[0]:  # outcomes from before the texts were kept
            parts = o["prompt"].rstrip("\n").split("\n\n")
            examples = [{**e, "contents": t} for e, t in zip(examples, parts[: len(examples)], strict=False)]
            q["query"] = q["query"] or parts[-1]
        q["methods"][o["method"]] = {
            "prediction": o.get("prediction"),
            "score": o.get("score"),
            "correct": o.get("correct"),
            "options": o.get("options"),
            "examples": [{"text": e.get("contents", e["id"]), "score": e.get("score")} for e in examples],
            "prompt": o.get("prompt", ""),
        }
    for q in queries.values():
        q["disagree"] = len({json.dumps(m["score"]) for m in q["methods"].values()}) > 1
    by_task: dict[str, list[tuple[str, dict]]] = defaultdict(list)
    for qid, q in sorted(queries.items(), key=lambda kv: (not kv[1]["disagree"], kv[0])):
        by_task[q["task"]].append((qid, q))
    quota = math.ceil(EXPLORER_QUERIES / max(1, len(by_task)))  # every task, disagreements first
    return {"methods": list(methods), "queries": {qid: q for items in by_task.values() for qid, q in items[:quota]}}
