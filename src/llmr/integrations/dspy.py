"""Per-input demonstrations for DSPy programs, chosen by a trained llmr retriever.

    from llmr.integrations.dspy import LLMRFewShot
    fewshot = LLMRFewShot(trainset, model="runs/pipeline/retriever", k=4)
    program = fewshot.compile(dspy.Predict("question -> answer"))
    program(question="...")   # each call's predictors see the k training examples chosen for this input

Like `dspy.KNNFewShot`, but the examples are labelled demos used as they are (no bootstrapping), and
the similarity is the learned retriever's. `fewshot.demos(**inputs)` gives them directly (as `dspy.KNN`),
the best last by default (`order`), next to the input as in LLM-R's prompts. `where` keeps only training
examples whose fields have these values (or that a test of the `dspy.Example` passes), before the search;
`explain=True` gives each demo a field `llmr: {score, rank}` (rank 1 = most similar), which DSPy's adapters
leave out of the prompt (they format only the signature's fields).

Each call runs a fresh copy of the program with its own demos, so concurrent calls (`dspy.Evaluate` with
threads, `dspy.Parallel`) never see each other's; `program.save()` therefore holds no demos: they are
chosen per input, by the retriever.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

try:
    import dspy
    from dspy.teleprompt import Teleprompter
except ImportError as exc:  # pragma: no cover - exercised only without dspy
    raise ImportError("the DSPy integration needs dspy: pip install dspy") from exc

from llmr.data.schema import Passage
from llmr.serving.selector import IndexKind, Order, Selector


class LLMRFewShot(Teleprompter):
    def __init__(
        self,
        trainset: Sequence[dspy.Example],
        model: str = "all-minilm-l6-v2",
        k: int = 4,
        index: IndexKind = "flat",
        selector: Selector | None = None,
        order: Order = "best_last",
        where: Mapping[str, Any] | Callable[[dspy.Example], bool] | None = None,
        explain: bool = False,
        **options: Any,  # budget_tokens, diversity, balance_labels
    ) -> None:
        super().__init__()
        self.trainset = list(trainset)
        self.k = k
        self.where = where
        self.explain = explain
        self.options = {**options, "order": order}
        self.input_keys = list(self.trainset[0].inputs().keys()) if self.trainset else []
        self.selector = selector or Selector.load(model, [], index=index)
        # Ids of their own: a given selector may hold other items, which this module never shows.
        self._prefix = f"dspy{len(self.selector.passages)}:"
        self.selector.add(
            [
                {"id": f"{self._prefix}{i}", "contents": self._text(ex, labels=True)}
                for i, ex in enumerate(self.trainset)
            ]
        )

    def _text(self, example: Any, labels: bool) -> str:
        values = [example[key] for key in self.input_keys if key in example]
        if labels:
            values += [v for _, v in example.labels().items()]
        return "\n".join(str(v) for v in values)

    def _example(self, passage: Passage) -> dspy.Example:
        return self.trainset[int(passage.id.removeprefix(self._prefix))]

    def _matches(self, passage: Passage) -> bool:
        """One of this module's examples, and (`where`) one whose own fields match."""
        if not passage.id.startswith(self._prefix):
            return False
        example = self._example(passage)
        if callable(self.where):
            return bool(self.where(example))
        return all(key in example and example[key] == value for key, value in (self.where or {}).items())

    def demos(self, **inputs: Any) -> list[dspy.Example]:
        """The k training examples chosen for these inputs, in `order` (with `explain`, each with its `llmr`)."""
        query = "\n".join(str(inputs[key]) for key in self.input_keys if key in inputs)
        alone = len(self.selector.passages) == len(self.trainset)  # no other items: nothing to filter out
        where = None if alone and not self.where else self._matches
        chosen = self.selector.select(query, self.k, where=where, **self.options)
        demos = [self._example(e.passage) for e in chosen]
        if self.explain:  # a copy: the trainset's examples stay as they were
            return [d.copy(llmr={"score": e.score, "rank": e.rank}) for d, e in zip(demos, chosen, strict=True)]
        return demos

    def compile(self, student: dspy.Module, *, trainset: Any = None, teacher: Any = None) -> dspy.Module:
        template, program = student.reset_copy(), student.reset_copy()
        fewshot = self

        def forward_with_demos(self: dspy.Module, **kwargs: Any) -> Any:
            call = template.deepcopy()  # this call's own predictors: demos set here are seen by no other call
            demos = fewshot.demos(**kwargs)
            for predictor in call.predictors():
                predictor.demos = demos
            return call(**kwargs)

        program.forward = types.MethodType(forward_with_demos, program)
        return program
