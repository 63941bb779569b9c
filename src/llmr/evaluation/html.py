"""`llmr report`: one self-contained HTML page for an eval, pipeline or study folder (no network to view it),
and `llmr report RUN_A RUN_B`: a page comparing two runs on the queries both scored.

The page: the run's metadata (LLM, encoders, versions, date, seeds, config, git commit, from its manifest);
the headline differences with their CIs in words; sortable per-task and per-category tables (each score with
its standard error and query count; EM and F1 where the metric is em_f1); plots with error bars, one colour
per method in every figure; the pipeline's stages; per-query outcomes to download as CSV or JSON; and an
explorer: for a test query, its options and gold answer as text, and each method's examples, prompt, option
log-likelihoods and prediction, filtered by task, by "methods disagree" and by text (also from the URL:
`#task=sst2&disagree=1&q=film`). Everything is read from the files the runs write (results.json,
explanations.jsonl.gz, manifest.json); the same files give the same bytes, wherever the folder is.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from llmr.base.encoders import DEFAULT_ENCODER
from llmr.base.files import write_text
from llmr.data.jsonl import read_jsonl
from llmr.evaluation.report import compare_runs
from llmr.tasks import CATEGORIES, TASKS

BASELINES = ("zero", "random", "kmeans", "bm25", "dense")
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
EXPLORER_QUERIES = 300  # queries the page carries, spread over the tasks: it stays a few MB
OUTCOME_COLUMNS = ("method", "k", "seed", "task", "query_id", "prediction", "gold", "score", "correct")
Cell = tuple[str, float | str, str]  # (text, sort key, note after the text); a table row is a list of them


@cache
def _templates() -> Environment:
    return Environment(loader=PackageLoader("llmr.evaluation", "templates"), autoescape=True, trim_blocks=True)


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
    return "stages" in _json(path)


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _outcomes(eval_dir: Path) -> list[dict[str, Any]]:
    path = eval_dir / "explanations.jsonl.gz"
    return list(read_jsonl(path)) if path.exists() else []


def write_html_report(folder: Path | str, out: Path | str | None = None) -> Path:
    folder = Path(folder)
    eval_dir, manifest = find_runs(folder)
    out = Path(out) if out else folder / "report.html"
    page: dict[str, Any] = {"title": "llmr report: pipeline", "blocks": [], "colours": {}, "explorer": {}}
    if eval_dir is not None:
        results = json.loads((eval_dir / "results.json").read_text())
        outcomes = _outcomes(eval_dir)
        methods = list(results["methods"])
        colours = {m: COLOURS[i % len(COLOURS)] for i, m in enumerate(methods)}
        # never the folder's name: a moved or resumed run gives the same page
        page["title"] = f"llmr report: {', '.join(methods)} at k = {', '.join(map(str, results['ks']))}"
        page.update(methods=methods, colours=colours, outcomes=outcome_table(outcomes))
        for k in results["ks"]:
            by_k = results["by_k"][str(k)]
            rows = [o for o in outcomes if o.get("k") == k and o.get("seed", 0) == results["seeds"][0]]
            stats = task_stats(rows, methods, by_k["per_task"])
            page["blocks"].append(
                {
                    "k": k,
                    "summary": summary(by_k, methods),
                    "figures": [
                        (
                            Markup(category_plot(stats, methods, colours, f"categories-k{k}")),
                            "Score per category (mean over its tasks, ±1.96 SE)",
                        ),
                        (Markup(difference_plot(headline_cis(by_k["ci"]), colours, f"diff-k{k}")), DIFFERENCES),
                    ],
                    "tables": [
                        category_table(stats, methods, f"categories-k{k}"),
                        task_table(stats, methods, by_k["queries"], f"tasks-k{k}"),
                    ],
                }
            )
            if k == results["ks"][0]:
                page["explorer"] = explorer(rows, methods)
    pipeline = json.loads(manifest.read_text()) if manifest is not None else None
    if pipeline is not None:
        page["pipeline"] = pipeline_section(pipeline, folder)
    page["metadata"] = run_metadata(_json(eval_dir / "manifest.json") if eval_dir is not None else pipeline)
    page["explorer_note"] = f"Up to {EXPLORER_QUERIES} test queries, as many per task (where methods disagree first)"
    write_text(out, _templates().get_template("report.html.j2").render(page))
    return out


def write_comparison(
    run_a: Path | str, run_b: Path | str, out: Path | str | None = None, n_resamples: int = 1000
) -> Path:
    """The page comparing two eval (or study) runs: per k and method, A - B with a paired-bootstrap CI on the
    queries both scored, per-task scores, both runs' metadata, and the paired outcomes to download."""
    runs = [Path(run_a), Path(run_b)]
    dirs = []
    for run in runs:
        eval_dir, _ = find_runs(run)
        if eval_dir is None or not (eval_dir / "explanations.jsonl.gz").exists():
            raise FileNotFoundError(f"{run}: no evaluation with per-query outcomes (explanations.jsonl.gz)")
        dirs.append(eval_dir)
    labels = [str(r) for r in runs] if runs[0].name == runs[1].name else [r.name for r in runs]
    pairs = compare_runs(_outcomes(dirs[0]), _outcomes(dirs[1]), n_resamples)
    if not pairs:
        raise ValueError(f"{runs[0]} and {runs[1]} share no k and no query: nothing to compare")
    names = [f"{p['a']} ({labels[0]}) - {p['b']} ({labels[1]}) @ k={p['k']}" for p in pairs]
    cis = {n: p for n, p in zip(names, pairs, strict=True)}
    colours = {p["a"]: COLOURS[i % len(COLOURS)] for i, p in enumerate(pairs)}
    head = ["k", f"A: {labels[0]}", f"B: {labels[1]}", "shared queries", "A", "B", "A − B", "95% CI", "verdict"]
    rows = [
        [
            _num(p["k"], "", 0),
            _text(p["a"]),
            _text(p["b"]),
            _num(p["queries"], "", 0),
            _num(p["score_a"]),
            _num(p["score_b"]),
            _num(p["difference"], "", 1, "+"),
            (f"{p['low']:+.1f} to {p['high']:+.1f}", p["low"], ""),
            _text(verdict(p["low"], p["high"])),
        ]
        for p in pairs
    ]
    per_task = [
        {
            "id": f"tasks-{i}",
            "caption": f"{name}: per task (shared queries)",
            "head": ["task", "metric", "queries", "A", "B", "A − B"],
            "rows": [
                [_text(t), _text(TASKS[t].metric), _num(v["n"], "", 0), _num(v["a"]), _num(v["b"]), _diff(v)]
                for t, v in p["per_task"].items()
            ],
        }
        for i, (name, p) in enumerate(cis.items())
    ]
    columns = ("k", "method_a", "method_b", "task", "query_id", "seed", "score_a", "score_b")
    downloads = {"columns": columns, "rows": [[p["k"], p["a"], p["b"], *o] for p in pairs for o in p["outcomes"]]}
    metadata = [run_metadata(_json(d / "manifest.json")) for d in dirs]
    keys = list(dict.fromkeys(key for rows_ in metadata for key, _ in rows_))
    both = [(key, *(dict(m).get(key, "–") for m in metadata)) for key in keys]
    page = {
        "title": f"llmr comparison: {labels[0]} vs {labels[1]}",
        "labels": labels,
        "summary": {"id": "pairs", "caption": "A − B on the queries both runs scored", "head": head, "rows": rows},
        "figure": Markup(difference_plot(cis, {n: colours[p["a"]] for n, p in cis.items()}, "compare")),
        "per_task": per_task,
        "metadata": both,
        "outcomes": downloads,
        "n_resamples": n_resamples,
    }
    out = Path(out) if out else runs[0] / f"compare-{runs[1].name}.html"
    write_text(out, _templates().get_template("compare.html.j2").render(page))
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


def natural_key(text: str) -> tuple:
    """Sorts "q2" before "q10" and "228" before "1247" (digit runs by value)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", str(text)) if t)


def verdict(low: float, high: float) -> str:
    return "better" if low > 0 else "worse" if high < 0 else "not distinguishable (the CI includes 0)"


# -- sections: data for the templates -------------------------------------------------------------


DIFFERENCES = "Paired differences, 95% bootstrap CI"


def _num(x: float, note: str = "", digits: int = 1, sign: str = "") -> Cell:
    if isinstance(x, float) and math.isnan(x):
        return ("–", "", note)  # sorts first, not as a number
    return (f"{x:{sign},.{digits}f}", x, note)


def _diff(v: Mapping[str, float]) -> Cell:
    return _num(v["a"] - v["b"], "", 1, "+")


def _text(s: str) -> Cell:
    return (s, s, "")


def headline_cis(cis: Mapping[str, Mapping[str, float]]) -> dict[str, Mapping[str, float]]:
    """The pairs the headline and its plot show: every method against BM25, dense and random."""
    return {p: ci for p, ci in cis.items() if p.partition(" - ")[2] in ("bm25", "dense", "random")}


def summary(by_k: Mapping[str, Any], methods: Sequence[str]) -> dict[str, Any]:
    """The headline: the average per method, and each learned method against BM25, dense and random."""
    lines = []
    for pair, ci in headline_cis(by_k["ci"]).items():
        a, _, b = pair.partition(" - ")
        if a not in BASELINES:
            lines.append({"a": a, "b": b, **ci, "verdict": verdict(ci["low"], ci["high"])})
    return {
        "tasks": len(by_k["queries"]),
        "queries": sum(by_k["queries"].values()),
        "averages": [(m, by_k["summary"][m]["average"]) for m in methods if m in by_k["summary"]],
        "lines": lines,
    }


def category_table(stats: Mapping, methods: Sequence[str], table_id: str) -> dict[str, Any]:
    per = {m: category_stats(stats, m) for m in methods}
    cats = [c for c in (*CATEGORIES, "average") if any(c in per[m] for m in methods)]
    rows = [
        [_text(c)] + [_num(per[m][c][0], f" ± {per[m][c][1]:.1f}") if c in per[m] else _num(math.nan) for m in methods]
        for c in cats
    ]
    return {"id": table_id, "caption": "Per category (± SE)", "head": ["category", *methods], "rows": rows}


def task_table(stats: Mapping, methods: Sequence[str], queries: Mapping[str, int], table_id: str) -> dict[str, Any]:
    rows = []
    for task, by_method in stats.items():
        cells = []
        for m in methods:
            e = by_method.get(m)
            if e is None:
                cells.append(_num(math.nan))
            elif "em" in e:
                cells.append((f"{e['em']:.1f} / {e['f1']:.1f}", e["f1"], f" EM / F1 ± {e['se']:.1f}"))
            else:
                cells.append(_num(e["score"], f" ± {e['se']:.1f}"))
        n = queries.get(task, max(int(e["n"]) for e in by_method.values()))
        rows.append([_text(task), _text(TASKS[task].metric), _num(n, "", 0), *cells])
    head = ["task", "metric", "queries", *methods]
    return {"id": table_id, "caption": "Per task (± SE over its queries)", "head": head, "rows": rows}


def pipeline_section(manifest: Mapping[str, Any], folder: Path) -> dict[str, Any]:
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
        cells = [
            _num(v, "", 3) if isinstance(v := report.get(k), float) else _text("" if v is None else str(v))
            for k in keys
        ]
        rows.append([_text(s["name"]), _num(s.get("seconds", 0), "", 0), *cells])
    curve = next(iter(sorted(folder.glob("**/learning-curve*.png"))), None)
    return {
        "table": {
            "id": "stages",
            "caption": "",
            "head": ["stage", "seconds", *(k.replace("_", " ") for k in keys)],
            "rows": rows,
        },
        "curve": base64.b64encode(curve.read_bytes()).decode() if curve else None,
    }


def run_metadata(manifest: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """What made the run, as its manifest records it (key, text). Never its folder or its date: a moved or
    resumed run must give the same page, byte for byte (the kill suite compares them)."""
    if not manifest:
        return [("manifest", "none found: the settings of this run are unknown")]
    config = manifest.get("config", {})
    llm = manifest.get("llm") or config.get("llm")
    methods = [str(m) for m in config.get("methods") or []]
    encoders = {m.partition(":")[2] or DEFAULT_ENCODER for m in methods if m.partition(":")[0] in ("dense", "kmeans")}
    encoders |= {str(v) for v in _find(config, "encoder")}
    rows = [
        ("date", "in manifest.json (created), kept out of this page: rerunning gives the same bytes"),
        ("stage", manifest.get("stage", "–")),
        ("LLM", str(llm.get("model") if isinstance(llm, Mapping) else llm or "–")),
        ("encoders", ", ".join(sorted(encoders)) or "–"),
        ("methods", ", ".join(methods) or "–"),
        *((key, _plain(config[key])) for key in ("k", "seeds", "split", "tasks", "max_per_task") if key in config),
        ("git commit", str(manifest.get("git") or "not recorded")),
        ("versions", ", ".join(f"{name} {v}" for name, v in manifest.get("versions", {}).items()) or "–"),
        ("inputs", ", ".join(f"{name} {v}" for name, v in manifest.get("inputs", {}).items()) or "–"),
        ("config", json.dumps(config, sort_keys=True, indent=1)),
    ]
    return [(key, str(value)) for key, value in rows]


def _find(config: Any, key: str) -> Iterable[Any]:
    """Every value under `key` in a nested config (a pipeline's encoders sit in its stages' sections)."""
    if isinstance(config, Mapping):
        for k, v in config.items():
            if k == key and v:
                yield v
            yield from _find(v, key)


def _plain(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else str(value)


def outcome_table(outcomes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Every per-query outcome (each method, k and seed), columnar: what the page's CSV and JSON hold."""
    rows = [[o.get(c, 0 if c == "seed" else None) for c in OUTCOME_COLUMNS] for o in outcomes]
    rows.sort(key=lambda r: (r[1], str(r[0]), r[2], r[3], natural_key(r[4])))
    return {"columns": OUTCOME_COLUMNS, "rows": rows}


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
    """Bars per category and method; no legend in the plot (it covered bars): the page's legend, above it,
    gives each method's colour."""
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
    return _svg(fig, name)


def difference_plot(cis: Mapping[str, Mapping[str, float]], colours: Mapping[str, str], name: str) -> str:
    """One row per pair "a - b", coloured by a (or by the pair's own name)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.35 * len(cis) + 1))
    for y, (pair, ci) in enumerate(cis.items()):
        colour = colours.get(pair, colours.get(pair.partition(" - ")[0], "#333"))
        ax.errorbar(
            ci["difference"],
            y,
            xerr=[[ci["difference"] - ci["low"]], [ci["high"] - ci["difference"]]],
            fmt="o",
            color=colour,
            capsize=3,
        )
    ax.axvline(0, color="#999", linewidth=1)
    ax.set_yticks(range(len(cis)), list(cis))
    ax.invert_yaxis()
    ax.set_xlabel("difference in points")
    return _svg(fig, name)


# -- the explorer ---------------------------------------------------------------------------------


def explorer(rows: Sequence[Mapping], methods: Sequence[str]) -> dict[str, Any]:
    """Per query: its id, task, text, gold answer and options' texts (multiple choice), and per method what it
    showed and predicted; the queries in task order, then naturally by id (q2 before q10)."""
    queries: dict[str, dict[str, Any]] = {}
    for o in rows:
        task = TASKS[o["task"]]
        q = queries.setdefault(
            str(o["query_id"]),
            {
                "id": str(o["query_id"]),
                "task": o["task"],
                "query": o.get("query", ""),
                "gold": o.get("gold"),
                # letter -> option text: "gold: B" says nothing without it
                "choices": dict(zip(task.label_words, o["choices"], strict=False)) if o.get("choices") else None,
                "methods": {},
            },
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
    by_task: dict[str, list[dict]] = defaultdict(list)
    for q in sorted(queries.values(), key=lambda q: (not q["disagree"], natural_key(q["id"]))):
        by_task[q["task"]].append(q)
    quota = math.ceil(EXPLORER_QUERIES / max(1, len(by_task)))  # every task, disagreements first
    kept = [q for task in sorted(by_task) for q in sorted(by_task[task][:quota], key=lambda q: natural_key(q["id"]))]
    return {"methods": list(methods), "queries": kept}
