"""`llmr pipeline`: LLM-R end to end, as stages whose outputs are keyed by what produced them.

    data -> iteration 1: candidates (BM25) -> score (LLM) -> reward -> teacher -> retriever
         -> iteration 2: candidates (retriever 1) -> score -> reward -> teacher -> retriever (union) -> ...
         (+ epr: the EPR baseline from iteration 1's LLM scores, when asked for)

Two scales, as the paper: candidates are mined for many training queries per task, the LLM scores a
few of them (`scoring.max_per_task`), the reward model learns from those, and the teacher (the reward
model, optionally with the scoring penalties) scores every mined query for the retriever to distil.

Each stage writes into `<out>/<iteration>/<stage>-<key>/`, where the key hashes the stage's config
and the keys of the stages it reads from (and, for data, the source files' fingerprints). A stage
is done when its `stage.json` holds that key: a re-run skips it, a changed setting gives a new key
to that stage and everything downstream, and switching a setting back finds the old outputs again.
A killed stage runs again in the same folder: scoring resumes from the score cache and training
from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.markup import escape

from llmr.base.manifest import config_hash, write_manifest
from llmr.data.schema import CandidateList
from llmr.distributed.engine import Engine
from llmr.llm import load_llm
from llmr.llm.base import LLM
from llmr.pipeline import stages
from llmr.pipeline.config import PipelineConfig
from llmr.scoring.feedback import settings_key
from llmr.training.retriever import RetrieverConfig, epr_config

STAGE_VERSION = 2  # bump when a stage's code changes what it writes


@dataclass
class StageResult:
    name: str  # e.g. "iteration-1/score"
    key: str
    path: Path
    ran: bool
    seconds: float
    report: dict[str, Any] = field(default_factory=dict)


def held_back(query_id: str, fraction: float, seed: int) -> bool:
    """A stable, seeded split of training queries: held-back ones measure agreement, never train."""
    digest = hashlib.sha256(f"{seed}:{query_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


class Pipeline:
    def __init__(
        self,
        config: PipelineConfig,
        out: Path | str,
        llm: LLM | Engine | None = None,  # default: the config's LLM, loaded here when first needed
        cache: Path | str | None = None,
        console: Console | None = None,
    ) -> None:
        self.config = config
        self.out = Path(out)
        self._llm = llm
        self.cache = cache
        self.console = console or Console(stderr=True)
        self.results: list[StageResult] = []
        self._dry = False

    # -- stage bookkeeping -------------------------------------------------------------------------

    def stage(
        self, name: str, settings: dict[str, Any], upstream: Sequence[StageResult], work: Callable[[Path], dict]
    ) -> StageResult:
        """Run `work(folder)` unless a finished stage with the same key exists; record the result."""
        kind = name.rsplit("/", 1)[-1]
        key = config_hash(
            {"stage": kind, "version": STAGE_VERSION, "settings": settings, "upstream": [u.key for u in upstream]}
        )
        path = self.out / f"{name}-{key}"
        marker = path / "stage.json"
        if marker.exists():
            done = json.loads(marker.read_text())
            if done.get("key") == key:
                result = StageResult(name, key, path, False, done.get("seconds", 0.0), done.get("report", {}))
                self.console.print(f"[dim]✓ {name}: done before ({path})[/]")
                self.results.append(result)
                return result
        if self._dry:  # `finished()`: the key and that it would run, nothing more
            result = StageResult(name, key, path, True, 0.0)
            self.results.append(result)
            return result
        self.console.print(f"[bold]▶ {name}[/] -> {path}")
        path.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        report = work(path) or {}
        seconds = time.perf_counter() - start
        write_manifest(
            marker,
            kind,
            settings,
            inputs={u.name: u.key for u in upstream},
            key=key,
            seconds=seconds,
            report=report,
        )
        self.console.print(f"[green]✓ {name}[/] in {seconds:,.0f} s {_short(report)}")
        result = StageResult(name, key, path, True, seconds, report)
        self.results.append(result)
        return result

    @property
    def index_dir(self) -> Path:
        """Dense indexes of the pool, keyed by encoder and pool fingerprints (shared with `llmr study`)."""
        return self.out / "index"

    @property
    def llm(self) -> LLM | Engine:
        if self._llm is None:
            self._llm = load_llm(self.config.llm.model, self.config.llm.backend, **self.config.llm.options())
        return self._llm

    def finished(self) -> set[str]:
        """The stages a run would skip, found by their keys; nothing runs and nothing is written."""
        console, self.console, self._dry = self.console, Console(quiet=True), True
        try:
            return {r.name for r in self.run() if not r.ran}
        finally:
            self.console, self._dry = console, False

    # -- the run -----------------------------------------------------------------------------------

    def run(self, until: Literal["data"] | None = None) -> list[StageResult]:
        """Run every stage (or only the data stage: `until="data"`); finished stages are skipped."""
        cfg = self.config
        started = time.perf_counter()
        self.results = []
        source, tasks, fingerprints = stages.resolve_data(cfg.data)
        data = self.stage(
            "data",
            {"data": cfg.data.model_dump(), "seed": cfg.seed, "sources": fingerprints},
            [],
            lambda path: stages.build_data(source, tasks, cfg, path),
        )
        if until == "data":
            return self.results
        retriever: StageResult | None = None
        teachers: list[StageResult] = []
        # torch adds nothing to the keys, so stages made before runtimes existed still count as done
        runtime = {} if cfg.encoder_runtime == "torch" else {"encoder_runtime": cfg.encoder_runtime}
        split = {"validation_fraction": cfg.validation_fraction, "seed": cfg.seed}
        for it in range(1, cfg.iterations + 1):
            prefix = f"iteration-{it}/"
            mined_by = [data] if retriever is None else [data, retriever]
            cands = self.stage(
                prefix + "candidates",
                {"candidates": cfg.candidates.keyed(), "seed": cfg.seed, **(runtime if retriever else {})},
                mined_by,
                lambda path, r=retriever: stages.mine(
                    data.path, "bm25" if r is None else str(r.path), cfg, path, self.index_dir
                ),
            )
            scored = reward = None
            if cfg.scores_with_llm(it):
                scored = self.stage(
                    prefix + "score",
                    {"llm": cfg.llm.model_dump(), "scoring": settings_key(cfg.scoring)},
                    [data, cands],
                    lambda path, c=cands: stages.score(data.path, c.path, self.llm, self.cache, cfg, path),
                )
            if scored and cfg.uses_reward:
                reward = self.stage(
                    prefix + "reward",
                    {"reward": asdict(cfg.reward), **split},
                    [data, scored],
                    lambda path, s=scored: stages.reward(data.path, s.path, cfg, self._is_train, path),
                )
            # The llm teachers distil the LLM's scored lists; the others score the mined candidates.
            llm_scores = scored.path / stages.SCORES_FILE if scored and cfg.distill.teacher.startswith("llm") else None
            teacher = self.stage(
                prefix + "teacher",
                stages.teacher_settings(cfg),
                [data, cands, *([reward] if reward else []), *([scored] if llm_scores else [])],
                lambda path, c=cands, r=reward, ls=llm_scores: stages.teacher(
                    data.path,
                    c.path / stages.CANDIDATES_FILE,
                    r.path if r else None,
                    cfg,
                    self.cache,
                    path / stages.TEACHER_FILE,
                    ls,
                ),
            )
            teachers = [*teachers, teacher] if cfg.distill.union else [teacher]
            retriever = self.stage(
                prefix + "retriever",
                {"retriever": _keyed(cfg.retriever), **split},
                [data, *teachers],
                lambda path, ts=teachers: stages.retriever(
                    data.path,
                    [t.path / stages.TEACHER_FILE for t in ts],
                    ts[-1].path / stages.TEACHER_FILE,
                    cfg.retriever,
                    self._is_train,
                    path,
                ),
            )
            if it == 1 and cfg.epr:
                self.stage(
                    prefix + "epr",
                    {"retriever": _keyed(epr_config(cfg.retriever)), **split},
                    [data, scored, teacher],  # teacher: its scores measure agreement on held-back queries
                    lambda path, s=scored, t=teacher: stages.epr(
                        data.path, s.path / stages.SCORES_FILE, t.path / stages.TEACHER_FILE, cfg, self._is_train, path
                    ),
                )
        if not self._dry:
            self._finish(time.perf_counter() - started)
        return self.results

    def _is_train(self, cands: CandidateList) -> bool:
        return not held_back(cands.query_id, self.config.validation_fraction, self.config.seed)

    def _finish(self, seconds: float) -> None:
        final = next(r for r in reversed(self.results) if r.name.endswith("/retriever"))
        data = next(r for r in self.results if r.name == "data")
        for name, target in (("retriever", final.path), ("data", data.path)):  # stable names for `llmr serve`
            link = self.out / name
            if link.is_symlink() or not link.exists():
                link.unlink(missing_ok=True)
                link.symlink_to(target.relative_to(self.out), target_is_directory=True)
        write_manifest(
            self.out / "manifest.json",
            "pipeline",
            self.config.dump(),
            inputs={r.name: r.key for r in self.results},
            seconds=seconds,
            retriever=str(final.path),
            stages=[{**asdict(r), "path": str(r.path)} for r in self.results],
        )
        self.console.print(
            f"[bold green]done[/] in {seconds:,.0f} s: retriever -> {final.path} "
            f"(also {self.out / 'retriever'}, pool {self.out / 'data'}); SentenceTransformer('{final.path}') loads it"
        )


def _keyed(config: RetrieverConfig) -> dict[str, Any]:
    """The retriever's settings under their names before issue 31 (teacher, not loss; the query-side knobs
    at their defaults; no dropout setting when it is the encoder's own), so retrievers trained before
    still count as done."""
    settings = asdict(config)
    if settings["dropout"] is None:
        del settings["dropout"]
    teacher = {"distill": "reward", "contrastive": "llm"}[settings.pop("loss")]
    return {**settings, "teacher": teacher, "train_side": "both", "document_max_length": 256, "anchor_weight": 5.0}


def _short(report: dict[str, Any]) -> str:
    """A stage's report as one readable line: `tasks 25, pool 12,144, agreement with llm 0.493`."""

    def value(v: Any) -> str:
        return (
            f"{v:,}"
            if isinstance(v, int) and not isinstance(v, bool)
            else f"{v:.3g}"
            if isinstance(v, float)
            else str(v)
        )

    shown = [
        f"{k.replace('_', ' ')} {value(v)}"
        for k, v in report.items()
        if v is not None and not isinstance(v, (dict, list))
    ]
    return f"[dim]{escape(', '.join(shown))}[/]" if shown else ""
