"""`llmr study`: the whole LLM-R benchmark from one config, as the paper runs it.

    pipeline (data -> N iterations of candidates, LLM scores, reward model, retriever; + EPR)
    -> evaluation of every selector on the test split (zero, random, k-means, BM25, dense,
       EPR, llmr-1 .. llmr-N) -> study.md: results, paired CIs, stage timings, the paper's numbers.

Everything is cached where it is made (pipeline stages by key, LLM scores and eval outcomes in
SQLite), so a killed study resumes, and it can be run in parts (`--until pipeline`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from llmr.base.files import write_json, write_text
from llmr.base.manifest import write_manifest
from llmr.base.runtime import RUNTIME_HELP, Runtime
from llmr.data.build import select_records
from llmr.data.directory import DataDir
from llmr.data.schema import Record
from llmr.distributed.engine import Engine
from llmr.evaluation import EvalSettings, OutcomeCache, evaluate_methods, write_report
from llmr.evaluation.report import headline
from llmr.llm import load_llm
from llmr.llm.base import LLM
from llmr.pipeline.config import PipelineConfig, Section, load_config
from llmr.pipeline.runner import Pipeline, StageResult
from llmr.tasks import TASKS, resolve_tasks

# The paper's averages over its 30 tasks (LLaMA-7B, k = 8; Wang et al. 2024, Table 1), by our method names.
PAPER = {"random": 57.9, "bm25": 61.3, "dense": 61.4, "epr": 63.5, "llmr-1": 65.7, "llmr-2": 66.5}
PAPER_NAMES = {"dense": "E5-base", "llmr-1": "LLM-R, 1 iteration", "llmr-2": "LLM-R, 2 iterations"}
QUERY_CAP_HELP = (
    "Cap a query's tokens (onnx/openvino runtimes): the latency option of benchmarks/RESULTS.md; "
    "default: the encoder's own limit."
)


class EvalSection(Section):
    name: str = Field("eval", pattern=r"^[\w.-]+$")  # the report's folder under the study folder: variants side by side
    llm: str | None = None  # the LLM to evaluate with (an embedded name, folder or hub id); None: the pipeline's
    # zero, random, kmeans, bm25, dense[:encoder], epr (the pipeline's EPR retriever), llmr-<i> (iteration i),
    # or <name>:<retriever folder>
    methods: list[str] = Field(
        default_factory=lambda: ["zero", "random", "kmeans", "bm25", "dense", "epr", "llmr-1", "llmr-2"]
    )
    k: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [8], min_length=1)
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0], min_length=1)
    tasks: str | None = None  # only these tasks' test queries (names, categories, 'unseen': the held-out ones)
    max_per_task: int = Field(0, ge=0)  # test queries per task (a seeded sample); 0 = all
    max_per_gen_task: int | None = Field(None, ge=0)  # the same for generation tasks (decoding costs); None: as above
    budget_tokens: int | None = Field(1024, ge=1)  # None: no budget
    max_new_tokens: int = Field(64, ge=1)
    resamples: int = Field(1000, ge=100)
    encoder_runtime: Runtime = Field("torch", description=RUNTIME_HELP)  # of the dense selectors
    query_max_length: int | None = Field(None, ge=8, description=QUERY_CAP_HELP)  # of the dense selectors' queries
    diversity: float | None = Field(None, ge=0.0, le=1.0)  # as `llmr eval --diversity` (MMR; None: off)
    balance_labels: bool = False  # as `llmr eval --balance-labels`
    compare: list[str] = Field(default_factory=list)  # more paired CIs: "a - b" (method names as above)
    headline: str | None = None  # also write headline.json here (e.g. benchmarks/quality/headline.json)

    @field_validator("query_max_length")
    @classmethod
    def _cap_needs_an_exported_runtime(cls, cap: int | None, info: ValidationInfo) -> int | None:
        if cap is not None and info.data.get("encoder_runtime") == "torch":
            raise ValueError("caps onnx/openvino queries only: set encoder_runtime to onnx, onnx-int8 or openvino")
        return cap

    def pairs(self) -> list[tuple[str, str]]:
        """`compare` as (a, b) pairs; a name that is not an evaluated method is an error."""
        found = []
        for text in self.compare:
            a, sep, b = (part.strip() for part in text.partition(" - "))
            names = {m.split(":", 1)[0] for m in self.methods}
            if not sep or a not in names or b not in names:
                raise ValueError(f"eval.compare {text!r}: write 'a - b' with two of the methods {sorted(names)}")
            found.append((a, b))
        return found


class StudyConfig(Section):
    pipeline: PipelineConfig = PipelineConfig()
    eval: EvalSection = EvalSection()

    @model_validator(mode="after")
    def _methods_exist(self) -> StudyConfig:
        for m in self.eval.methods:
            if m.startswith("llmr-") and ":" not in m:
                it = m.removeprefix("llmr-")
                if not it.isdigit() or not 1 <= int(it) <= self.pipeline.iterations:
                    raise ValueError(f"eval method {m!r}: the pipeline runs iterations 1..{self.pipeline.iterations}")
        self.eval.pairs()
        return self

    @classmethod
    def load(cls, path: Path | str | None = None, overrides: list[str] | None = None) -> StudyConfig:
        return load_config(cls, path, overrides)


class Study:
    def __init__(
        self,
        config: StudyConfig,
        out: Path | str,
        llm: LLM | Engine | None = None,
        eval_llm: LLM | Engine | None = None,  # default: `eval.llm` loaded here, or the pipeline's LLM
    ) -> None:
        self.config = config
        self.out = Path(out)
        needs_epr = "epr" in config.eval.methods
        self.pipeline = Pipeline(  # the study's pipeline: its own score cache, EPR when evaluated
            config.pipeline.model_copy(update={"epr": config.pipeline.epr or needs_epr}),
            self.out / "pipeline",
            llm=llm,
            cache=self.out / "scores.sqlite",
        )
        self._eval_llm = eval_llm

    @property
    def needs_pipeline(self) -> bool:
        """Whether a method evaluates a retriever this study trains (baselines need only the data stage)."""
        return any(m == "epr" or (m.startswith("llmr-") and ":" not in m) for m in self.config.eval.methods)

    def run(self, until: Literal["pipeline", "eval"] = "eval") -> dict[str, Any]:
        started = time.perf_counter()
        stages = self.pipeline.run(until=None if until == "pipeline" or self.needs_pipeline else "data")
        if until == "pipeline":
            return {"stages": stages}
        runs, seconds = self.evaluate(stages)
        cfg = self.config.eval
        eval_dir = self.out / cfg.name
        unseen = self.config.pipeline.candidates.unseen()
        results = write_report(runs, eval_dir, cfg.resamples, unseen, cfg.pairs())
        iterations = [m for m in results["methods"] if m.startswith("llmr-")]
        top = headline(results, cfg.k[0], {iterations[-1]: "llmr"} if iterations else {})
        for path in [eval_dir / "headline.json", *([Path(cfg.headline)] if cfg.headline else [])]:
            write_json(path, {**top, "llm": self.eval_llm.fingerprint, "unseen_tasks": sorted(unseen)})
        timings = _merge_timings(eval_dir / "timings.json", seconds)
        write_manifest(
            eval_dir / "manifest.json",
            "study",
            self.config.model_dump(mode="json"),
            inputs={r.name: r.key for r in stages},
            seconds=time.perf_counter() - started,
            llm=self.eval_llm.fingerprint,
        )
        write_text(eval_dir / "study.md", study_markdown(stages, results, timings, eval_dir))
        return {"stages": stages, "results": results, "eval_seconds": timings}

    @property
    def eval_llm(self) -> LLM | Engine:
        name = self.config.eval.llm
        if self._eval_llm is None and (name is None or name == self.config.pipeline.llm.model):
            return self.pipeline.llm
        if self._eval_llm is None:
            llm = self.config.pipeline.llm
            self._eval_llm = load_llm(name, llm.backend, **llm.options())
        return self._eval_llm

    def method_specs(self, stages: list[StageResult]) -> list[str]:
        """Method names as the config gives them, resolved to retriever folders of this run."""
        folders = {r.name: r.path for r in stages}
        specs = []
        for m in self.config.eval.methods:
            if m == "epr":
                specs.append(f"epr:{folders['iteration-1/epr']}")
            elif m.startswith("llmr-") and ":" not in m:
                specs.append(f"{m}:{folders['iteration-' + m.removeprefix('llmr-') + '/retriever']}")
            else:
                specs.append(m)
        return specs

    def evaluate(self, stages: list[StageResult]) -> tuple[dict, dict[str, float]]:
        cfg = self.config.eval
        data = DataDir(next(r.path for r in stages if r.name == "data"))
        records = list(data.records("test"))
        if cfg.tasks:
            unseen = ",".join(self.config.pipeline.candidates.unseen())
            names = {t.name for t in resolve_tasks(cfg.tasks.replace("unseen", unseen))}
            records = [r for r in records if r.task_name in names]
        records = test_queries(records, cfg)
        settings = EvalSettings(
            budget_tokens=cfg.budget_tokens,
            max_new_tokens=cfg.max_new_tokens,
            encoder_runtime=cfg.encoder_runtime,
            query_max_length=cfg.query_max_length,
            diversity=cfg.diversity,
            balance_labels=cfg.balance_labels,
        )
        # One cache for every variant (outcomes are keyed by LLM, selector, k, budget and query).
        cache = OutcomeCache(self.out / "eval" / "cache.sqlite")
        try:
            return evaluate_methods(
                self.eval_llm,
                self.method_specs(stages),
                list(data.passages()),
                records,
                cfg.k,
                cfg.seeds,
                cache,
                settings,
                index_dir=self.pipeline.index_dir,  # iteration 2 mined with llmr-1: its index is reused
            )
        finally:
            cache.close()


def test_queries(records: list[Record], cfg: EvalSection) -> list[Record]:
    """A seeded sample of each task's test queries: `max_per_task`, or `max_per_gen_task` for generation tasks."""
    is_gen = [(t := TASKS.get(r.task_name)) is not None and t.mode == "gen" for r in records]
    gen = [r for r, g in zip(records, is_gen, strict=True) if g]
    rest = [r for r, g in zip(records, is_gen, strict=True) if not g]
    gen_cap = cfg.max_per_task if cfg.max_per_gen_task is None else cfg.max_per_gen_task
    return select_records(rest, None, cfg.max_per_task, seed=0) + select_records(gen, None, gen_cap, seed=0)


def _merge_timings(path: Path, seconds: Mapping[str, float]) -> dict[str, float]:
    """Eval seconds per method; the longest seen is kept (a re-run finds the outcomes cached and takes ~0 s)."""
    known = json.loads(path.read_text()) if path.exists() else {}
    known.update({name: max(value, known.get(name, 0.0)) for name, value in seconds.items()})
    write_json(path, known)
    return known


def study_markdown(
    stages: list[StageResult], results: Mapping[str, Any], eval_seconds: Mapping[str, float], eval_dir: Path
) -> str:
    """study.md: the eval report, the paper's averages beside ours, and every stage's wall time."""
    ks = results["ks"]
    lines = ["## Results", "", (eval_dir / "results.md").read_text(), "## Against the paper (average over tasks)", ""]
    lines += ["| method | paper (LLaMA-7B, 30 tasks, k = 8) | " + " | ".join(f"here, k = {k}" for k in ks) + " |"]
    lines += ["|---|---:|" + "---:|" * len(ks)]
    for m in results["methods"]:
        paper = f"{PAPER[m]:.1f}" if m in PAPER else "—"
        here = " | ".join(f"{results['by_k'][str(k)]['summary'][m]['average']:.1f}" for k in ks)
        name = f"{m} (paper: {PAPER_NAMES[m]})" if m in PAPER_NAMES else m
        lines.append(f"| {name} | {paper} | {here} |")
    lines += ["", "## Wall time", "", "| stage | seconds | report |", "|---|---:|---|"]
    for r in stages:
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in r.report.items() if not isinstance(v, dict)}
        lines.append(f"| {r.name} | {r.seconds:,.0f} | {json.dumps(shown)} |")
    for name, sec in eval_seconds.items():
        lines.append(f"| eval/{name} | {sec:,.0f} | |")
    total = sum(r.seconds for r in stages) + sum(eval_seconds.values())
    lines += [f"| **total** | **{total:,.0f}** ({total / 3600:.2f} h) | |", ""]
    return "\n".join(lines)
