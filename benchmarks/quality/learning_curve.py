"""Does the reward model learn with more LLM-scored queries? Held-back agreement against queries per task.

    python benchmarks/quality/learning_curve.py runs/quality --tasks sst2,ag_news,copa,arc_e --sizes 4,8,16,32,64

Reads a study's data and iteration-1 candidates. On the chosen tasks, the held-back queries (the
pipeline's split) are fixed; for each size n, the reward model (the study's reward settings) trains on
n LLM-scored training queries per task (nested samples: each size's queries include the smaller
sizes'), and is measured on the held-back ones: pairwise agreement with the LLM among kept candidates,
with penalized candidates too, and kept above penalized. LLM scores come from the study's score cache
(pairs it already scored are not rescored). Writes `<study>/learning-curve/curve.{json,md,png}`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from llmr.data.build import select_records
from llmr.data.jsonl import read_jsonl, write_jsonl
from llmr.data.schema import CandidateList
from llmr.pipeline.runner import held_back
from llmr.pipeline.stages import CANDIDATES_FILE, SCORES_FILE, reward, score
from llmr.pipeline.study import StudyConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--config", type=Path, default=Path(__file__).with_name("study.yaml"))
    parser.add_argument("--tasks", default="sst2,ag_news,copa,arc_e")
    parser.add_argument("--sizes", default="4,8,16,32,64")
    args = parser.parse_args()
    cfg = StudyConfig.load(args.config).pipeline
    tasks, sizes = args.tasks.split(","), sorted(int(s) for s in args.sizes.split(","))
    it = args.study / "pipeline" / "iteration-1"
    mined_dir = next(c for c in it.glob("candidates-*") if (c / "stage.json").exists())
    data = args.study / "pipeline" / f"data-{json.loads((mined_dir / 'stage.json').read_text())['inputs']['data']}"
    out = args.study / "learning-curve"
    out.mkdir(parents=True, exist_ok=True)

    def is_train(c: CandidateList) -> bool:
        return not held_back(c.query_id, cfg.validation_fraction, cfg.seed)

    mined = [c for c in read_jsonl(mined_dir / CANDIDATES_FILE, CandidateList) if c.task_name in tasks]
    held = [c for c in mined if not is_train(c)]
    train = select_records([c for c in mined if is_train(c)], None, sizes[-1], cfg.seed)
    write_jsonl(out / CANDIDATES_FILE, [*train, *held])
    all_scores = out / "scores"
    all_scores.mkdir(exist_ok=True)
    if not (all_scores / SCORES_FILE).exists():
        from llmr.llm import load_llm

        llm = load_llm(cfg.llm.model, cfg.llm.backend, **cfg.llm.options())
        full = cfg.model_copy(update={"scoring": replace(cfg.scoring, max_per_task=0)})
        score(data, out, llm, args.study / "scores.sqlite", full, all_scores)
    scored = {c.query_id: c for c in read_jsonl(all_scores / SCORES_FILE, CandidateList)}
    rows = []
    for n in sizes:
        folder = out / f"n{n}"
        if not (folder / "report.json").exists():
            chosen = select_records(train, None, n, cfg.seed)
            folder.mkdir(exist_ok=True)
            write_jsonl(folder / SCORES_FILE, [scored[c.query_id] for c in [*chosen, *held]])
            start = time.perf_counter()
            report = reward(data, folder, cfg, is_train, folder / "reward")  # the model beside its inputs
            report["seconds"] = time.perf_counter() - start
            (folder / "report.json").write_text(json.dumps(report, indent=1))
        rows.append({"queries_per_task": n, **json.loads((folder / "report.json").read_text())})
    (out / "curve.json").write_text(json.dumps(rows, indent=1))
    lines = [
        f"Tasks: {', '.join(tasks)}; {len(held)} held-back queries; reward settings as the study's.",
        "",
        "| LLM-scored queries per task | training queries | agreement (kept) | agreement (all) "
        "| kept above penalized |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        cells = [r.get(k) for k in ("agreement_with_llm", "agreement_with_llm_all", "kept_above_penalized")]
        shown = " | ".join("—" if v is None else f"{v:.3f}" for v in cells)
        lines.append(f"| {r['queries_per_task']} | {r['train_queries']} | {shown} |")
    (out / "curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(rows, out / "curve.png")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = [r["queries_per_task"] for r in rows]
    for key, label in (
        ("agreement_with_llm", "kept candidates"),
        ("agreement_with_llm_all", "all candidates"),
        ("kept_above_penalized", "kept above penalized"),
    ):
        ax.plot(x, [r.get(key) for r in rows], marker="o", label=label)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("LLM-scored training queries per task")
    ax.set_ylabel("agreement with the LLM (held back)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
