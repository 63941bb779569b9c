"""One YAML file describes a whole LLM-R run; pydantic validates it (unknown keys are errors).

The training sections reuse the trainers' own dataclasses, so a default changes in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmr.base.runtime import RUNTIME_HELP, Runtime
from llmr.llm import BACKENDS, DEFAULT_LLM, DTYPE_HELP, MODEL_HELP
from llmr.scoring.feedback import ScoringConfig
from llmr.tasks import resolve_tasks
from llmr.tasks.base import Mode
from llmr.training.retriever import RetrieverConfig
from llmr.training.reward import RewardConfig
from llmr.training.teacher import Teacher


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSection(Section):
    source: str = "shared"  # as `llmr data build --source`
    tasks: str = "all-available"
    # Caps per task; None: no cap (`llmr data build` validates its options here too: one rule).
    max_train: int | None = Field(30_000, ge=1)  # training queries
    max_test: int | None = Field(None, ge=1)
    max_pool: int | None = Field(None, ge=1)  # pool items (None: every train row, as the paper)


class CandidatesSection(Section):
    top_n: int = Field(100, ge=1, description="Candidates kept per query.")
    scope: Literal["task", "unified"] = Field(
        "unified", description="'unified': the whole pool, same-task items first (the paper); 'task': its task only."
    )
    # The distillation scale: the teacher scores them all; the LLM scores `scoring.max_per_task` of them.
    max_per_task: int = Field(0, ge=0, description="Training queries mined per task, a seeded sample (0 = all).")
    hold_out: list[str] = Field(
        default_factory=list,
        description="Tasks (names or categories) never mined, so never trained on; their pool items stay: "
        "a leave-tasks-out study's unseen tasks.",
    )

    def keyed(self) -> dict[str, Any]:
        """The settings in the stage key; hold_out only when set, so older runs keep their keys."""
        return self.model_dump(exclude=set() if self.hold_out else {"hold_out"})

    def unseen(self) -> set[str]:
        return {t.name for t in resolve_tasks(self.hold_out)} if self.hold_out else set()

    @model_validator(mode="after")
    def _known_tasks(self) -> CandidatesSection:
        self.unseen()  # an unknown task or category fails here, before anything runs
        return self


class LLMSection(Section):
    model: str = Field(DEFAULT_LLM, description=MODEL_HELP)
    backend: str = Field("hf", description=f"LLM backend: {', '.join(BACKENDS)}.")
    dtype: str = Field("auto", description=DTYPE_HELP)
    batch_tokens: int = Field(8192, description="hf backend: token budget of one forward pass.")

    def options(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "batch_tokens": self.batch_tokens} if self.backend == "hf" else {}


class DistillSection(Section):
    """What the retriever is distilled from: the teacher's scores over every mined training query."""

    teacher: Teacher = Field(
        "reward",
        description="Its scores: reward (the paper), reward+penalties, penalties (the heuristics alone), llm "
        "(the LLM's own scores of the queries it scored, no reward model), or llm+penalties (the LLM's scores "
        "where it scored the query, any mode; the penalties on every other mined query of `modes`).",
    )
    top_n: int = Field(100, ge=2, description="Candidates per query the teacher scores (the paper: up to 100).")
    union: bool = Field(
        True,
        description="Iteration >= 2: the retriever trains from the base encoder on every iteration's teacher data "
        "so far (the authors' recipe); false: on this iteration's alone.",
    )
    # The ninth look (benchmarks/RESULTS.md): multiple choice falls as more of its queries are distilled.
    modes: list[Mode] = Field(
        ["cls", "mc", "gen"],
        min_length=1,
        description="Task modes whose mined queries the teacher scores and the retriever distils on; the other "
        "tasks' passages stay in the pool.",
    )
    llm_modes: list[Mode] = Field(
        ["cls", "mc", "gen"],
        min_length=1,
        description="llm+penalties: task modes whose LLM-scored lists join; the other scored queries keep their "
        "labels-only lists (where `modes` has them).",
    )


class PipelineConfig(Section):
    """`llmr pipeline run config.yaml`: data -> (candidates -> score -> reward -> retriever) x iterations."""

    iterations: int = Field(2, ge=1)
    seed: int = 42
    validation_fraction: float = Field(0.1, ge=0.0, lt=1.0)  # training queries held back to measure agreement
    epr: bool = False  # also train the EPR baseline from iteration 1's LLM scores
    # The runtime of the encoders that mine candidates (iteration >= 2) and of the teacher's reward model.
    encoder_runtime: Runtime = Field("torch", description=RUNTIME_HELP)
    data: DataSection = DataSection()
    candidates: CandidatesSection = CandidatesSection()
    llm: LLMSection = LLMSection()
    scoring: ScoringConfig = ScoringConfig()
    reward: RewardConfig = RewardConfig()
    distill: DistillSection = DistillSection()
    retriever: RetrieverConfig = RetrieverConfig()

    @classmethod
    def load(cls, path: Path | str | None = None, overrides: list[str] | None = None) -> PipelineConfig:
        """Read a YAML file (None: the defaults), apply `section.key=value` overrides, validate."""
        return load_config(cls, path, overrides)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def scores_with_llm(self, iteration: int) -> bool:
        """Whether an iteration has the LLM score stage: the penalties teacher needs no LLM, but EPR trains on
        iteration 1's LLM scores. The reward stage runs only for a teacher that uses it (`uses_reward`); the
        llm teacher distils the scores themselves."""
        return self.uses_reward or self.distill.teacher.startswith("llm") or (iteration == 1 and self.epr)

    @property
    def uses_reward(self) -> bool:
        return self.distill.teacher.startswith("reward")


# Settings that were removed, and why: a config naming one fails with that reason, not a silent default.
RETIRED = {
    "distill.prior": "refuted twice as a teacher prior (benchmarks/RESULTS.md, eighth and eleventh looks)",
    "distill.prior_weight": "the teacher prior was refuted twice (benchmarks/RESULTS.md, eighth and eleventh looks)",
    "retriever.train_side": "query-side training lost 2.6 points to both sides (benchmarks/RESULTS.md, sixth look)",
    "retriever.document_max_length": "query-side training, its user, lost (benchmarks/RESULTS.md, sixth look)",
    "retriever.anchor_weight": "query-side training, its user, lost (benchmarks/RESULTS.md, sixth look)",
    "retriever.teacher": "renamed retriever.loss (reward -> distill, llm -> contrastive); EPR is `epr: true`",
}
C = TypeVar("C", bound=BaseModel)
SHIPPED = Path(__file__).parent / "configs"  # configs installed with llmr, run by name: `llmr pipeline cpu-6tasks`


def find_config(spec: Path | str) -> Path:
    """A config file's path, or the name of a shipped config (`cpu-6tasks`; `configs/cpu-6tasks.yaml` too)."""
    path = Path(spec)
    if path.is_file():
        return path
    shipped = SHIPPED / f"{path.name.removesuffix('.yaml')}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in SHIPPED.glob("*.yaml")))
    raise FileNotFoundError(f"config not found: {spec} (no such file; shipped configs: {names})")


def load_config(cls: type[C], path: Path | str | None, overrides: list[str] | None) -> C:
    """A YAML mapping (None: the defaults) with `section.key=value` overrides, validated as `cls`;
    errors name the file and the setting."""
    where = str(path) if path else "config"
    raw: Any = {}
    if path:
        path = find_config(path)
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f"{where}:{mark.line + 1}" if mark else where
            raise ValueError(f"{line}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: the top level must be a mapping of sections")
    raw = apply_overrides(raw, overrides or [])
    for key in _leaves(raw):
        retired = next((r for r in RETIRED if key == r or key.endswith("." + r)), None)
        if retired:
            raise ValueError(f"{where}: {key} was removed: {RETIRED[retired]}")
    try:
        # Over the defaults, so a partial nested section (retriever.groups) keeps its parent's defaults
        # rather than its own class's (the retriever's 3 negatives, not GroupConfig's 7).
        return cls.model_validate(_deep_merge(cls().model_dump(), raw))
    except ValidationError as exc:
        err = exc.errors()[0]  # one line: the setting, its value, and what is wrong
        name = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{where}: {name} = {err.get('input')!r}: {err['msg']}") from None


def _leaves(raw: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key of a nested mapping (a section's own key too)."""
    keys = []
    for key, value in raw.items():
        keys.append(prefix + str(key))
        if isinstance(value, dict):
            keys += _leaves(value, f"{prefix}{key}.")
    return keys


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _deep_merge(merged[key], value) if both else value
    return merged


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `section.key=value` overrides (values parsed as YAML) to a raw config mapping."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected section.key=value")
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        try:
            node[leaf] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ValueError(
                f"override {item!r}: the value is not valid YAML ({getattr(exc, 'problem', exc)})"
            ) from None
    return raw
