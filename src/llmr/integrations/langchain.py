"""A LangChain example selector backed by an llmr `Selector` (works with `FewShotPromptTemplate`).

from llmr.integrations.langchain import LLMRExampleSelector
selector = LLMRExampleSelector.from_examples(examples, model="runs/pipeline/retriever", k=4)
prompt = FewShotPromptTemplate(example_selector=selector, example_prompt=..., suffix=..., input_variables=[...])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

try:
    from langchain_core.example_selectors import BaseExampleSelector
except ImportError as exc:  # pragma: no cover - exercised only without langchain-core
    raise ImportError("the LangChain integration needs langchain-core: pip install langchain-core") from exc

from llmr.data.schema import Passage
from llmr.serving.selector import IndexKind, Order, Selector


class LLMRExampleSelector(BaseExampleSelector):
    """Selects LangChain examples (dicts) with a trained llmr retriever.

    An example is indexed as its `input_keys` values then its other values, one per line (the LLM-R
    pool format: query, then answer); a query is the input variables' values for `input_keys`.
    Pool items that did not come from LangChain (a selector loaded with a passages file) come back as
    `{input_key: query, output_key: answer}`. `order="best_last"` (the default) lists the best example
    last, next to the query in the prompt, as LLM-R's retriever was trained to be used. `where` keeps
    only examples whose fields have these values (before the search); `explain` adds each chosen one's
    `llmr: {score, rank}`. `aselect_examples`/`aadd_example` (LangChain's) run these in a thread.
    """

    def __init__(
        self,
        selector: Selector,
        k: int = 4,
        input_keys: Sequence[str] | None = None,
        task: str | None = None,
        output_keys: tuple[str, str] = ("input", "output"),
        order: Order = "best_last",
        where: Mapping[str, Any] | None = None,
        explain: bool = False,
        **options: Any,  # budget_tokens, diversity, balance_labels
    ) -> None:
        self.selector = selector
        self.where = dict(where) if where else None
        self.explain = explain
        self.k = k
        self.input_keys = list(input_keys) if input_keys else None
        self.task = task
        self.output_keys = output_keys
        self.options = {**options, "order": order}
        self._examples: dict[str, dict[str, Any]] = {}

    @classmethod
    def from_examples(
        cls,
        examples: Sequence[Mapping[str, Any]],
        model: str = "all-minilm-l6-v2",
        k: int = 4,
        input_keys: Sequence[str] | None = None,
        index: IndexKind = "flat",
        **options: Any,
    ) -> LLMRExampleSelector:
        """A selector over these examples, with a trained retriever folder or any sentence-transformers encoder."""
        self = cls(Selector.load(model, [], index=index), k, input_keys, **options)
        for example in examples:
            self.add_example(example)
        return self

    def _keys(self, example: Mapping[str, Any]) -> list[str]:
        return [key for key in self.input_keys if key in example] if self.input_keys else list(example)

    def add_example(self, example: Mapping[str, Any]) -> Any:
        inputs = self._keys(example)
        outputs = [key for key in example if key not in inputs]
        contents = "\n".join(str(example[key]) for key in inputs + outputs)
        example_id = f"lc-{len(self._examples)}"
        self.selector.add([{"id": example_id, "contents": contents, "task_name": self.task or "default"}])
        self._examples[example_id] = dict(example)
        return example_id

    def _matches(self, passage: Passage) -> bool:
        """`where` over the LangChain example's own fields (the pool item's, for items from elsewhere)."""
        fields = self._examples.get(passage.id) or passage.model_dump()
        return all(fields.get(key) == value for key, value in (self.where or {}).items())

    def select_examples(self, input_variables: dict[str, Any]) -> list[dict[str, Any]]:
        query = "\n".join(str(input_variables[key]) for key in self._keys(input_variables))
        where = self._matches if self.where else None
        chosen = self.selector.select(query, self.k, task=self.task, where=where, **self.options)
        out = []
        for e in chosen:
            if e.passage.id in self._examples:
                example = dict(self._examples[e.passage.id])
            else:
                text, _, answer = e.passage.contents.rpartition("\n")
                example = {self.output_keys[0]: text, self.output_keys[1]: answer}
            if self.explain:  # a prompt template uses only its own variables: this key is ignored there
                example["llmr"] = {"score": e.score, "rank": e.rank}
            out.append(example)
        return out
