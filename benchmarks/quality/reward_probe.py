"""Retrain a study's reward model with other settings on the same LLM scores; report held-back agreement.

    python benchmarks/quality/reward_probe.py runs/quality --iteration 1 \\
        --set reward.groups.top_k_positive=1 --set reward.groups.bottom_k_negative=4 --set reward.groups.n_negatives=4

The study's pipeline config (`--config`, the study YAML) with `--set` overrides of its pipeline
section; the model goes to `<study>/probes/<hash of the reward settings>/`. Prints, on the held-back
training queries, the pairwise agreement with the LLM among kept candidates (what the pipeline
reports) and how often a kept candidate is scored above a penalized one (another task's or label's).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from llmr.base.manifest import config_hash
from llmr.data.directory import DataDir
from llmr.data.schema import CandidateList
from llmr.pipeline.runner import held_back
from llmr.pipeline.stages import reward
from llmr.pipeline.study import StudyConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path)
    parser.add_argument("--config", type=Path, default=Path(__file__).with_name("study.yaml"))
    parser.add_argument("--iteration", type=int, default=1)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    cfg = StudyConfig.load(args.config, [f"pipeline.{o}" for o in args.overrides]).pipeline
    it = args.study / "pipeline" / f"iteration-{args.iteration}"
    scores = next(s for s in it.glob("score-*") if (s / "stage.json").exists())
    data = args.study / "pipeline" / f"data-{json.loads((scores / 'stage.json').read_text())['inputs']['data']}"
    out = args.study / "probes" / config_hash({"reward": asdict(cfg.reward), "scores": scores.name})
    start = time.perf_counter()

    def is_train(c: CandidateList) -> bool:
        return not held_back(c.query_id, cfg.validation_fraction, cfg.seed)

    if (out / "report.json").exists():
        report = json.loads((out / "report.json").read_text())
    else:
        report = reward(data, scores, cfg, is_train, out)
        (out / "report.json").write_text(json.dumps(report, indent=1))
    pool = len(list(DataDir(data).passages()))
    print(f"reward settings: {json.dumps(asdict(cfg.reward))}")
    print(f"pool {pool:,}; {report['train_queries']} training queries, {report['held_back_queries']} held back")
    print(
        f"agreement with the LLM (kept candidates): {report['agreement_with_llm']:.3f}; "
        f"kept above penalized: {report['kept_above_penalized']:.3f}; {time.perf_counter() - start:,.0f} s -> {out}"
    )


if __name__ == "__main__":
    main()
