"""`llmr.Selector`: a trained retriever (or any sentence-transformers encoder) over a pool of passages
(labelled training examples, LLM-R's `passages.jsonl.gz`), choosing in-context examples for new queries.

    selector = Selector.load("runs/quality/pipeline/retriever", pool="runs/.../passages.jsonl.gz")
    selector.select("Review: a gem of a film. Positive or negative?", k=4, task="sst2")
    selector.build_prompt(query, k=4, budget_tokens=512)
    selector.add([{"query": "...", "answer": "...", "task_name": "sst2"}])   # no index rebuild
    selector.save("runs/selector"); Selector.load("runs/selector")            # no re-encoding

Selection is `llmr eval`'s (`evaluation.selectors.PoolSelector`, which this class extends): FAISS over
normalised embeddings (cosine), exact (`flat`) or approximate (`hnsw`); the top k of one task's items (or
of the pool); optionally MMR over the top `max(40, 4k)` (`diversity`: 0 = by similarity only) and label
balance (round-robin over answers).

Order (`order`, the same option in every interface): the examples are ranked as they were picked (by
similarity; with `diversity` or `balance_labels`, in the order MMR or the round-robin picked them).
`best_first` lists them in that rank order (the default of `select`); `best_last` reverses it, so the
best example sits next to the query, as in LLM-R's prompts (the default of everything that builds a
prompt: `build_prompt`, POST /v1/prompt, the LangChain and DSPy integrations).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from llmr.base.encoders import Encoder
from llmr.base.files import publish, write_json
from llmr.base.index import IndexKind, VectorIndex
from llmr.base.runtime import Runtime
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl, write_jsonl
from llmr.data.schema import Passage
from llmr.evaluation.selectors import DensePool, Example
from llmr.prompt import build_prompt, examples_within_budget

PoolSource = str | Path | Iterable[Passage | Mapping[str, Any]]
Order = Literal["best_first", "best_last"]
SAVED = "selector.json"  # a saved selector: this, index.faiss, passages.jsonl.gz
JOURNAL = "added.jsonl"  # passages added since it was saved, one per line


def as_passage(item: Passage | Mapping[str, Any], default_id: str) -> Passage:
    """A pool item from a Passage or a mapping: `contents` (or `query` + `answer`), optional `id` and `task_name`."""
    if isinstance(item, Passage):
        return item
    if not isinstance(item, Mapping):
        raise TypeError(f"an example must be a mapping or a Passage, not {type(item).__name__}")
    if "contents" in item:
        contents = item["contents"]
    elif "query" in item and "answer" in item:
        contents = f"{item['query']}\n{item['answer']}"
    else:
        raise ValueError(f"example {item.get('id', default_id)!r}: needs `contents`, or `query` and `answer`")
    if not isinstance(contents, str) or not contents.strip():
        raise ValueError(f"example {item.get('id', default_id)!r}: `contents` must be non-empty text")
    return Passage(id=item.get("id", default_id), contents=contents, task_name=item.get("task_name") or "default")


def read_pool(pool: PoolSource) -> list[Passage]:
    """A passages file (`.jsonl[.gz]`), a data folder holding one, or the items themselves."""
    if isinstance(pool, str | Path):
        path = Path(pool)
        if path.is_dir():
            return list(DataDir(path).passages())
        if not path.is_file():
            raise FileNotFoundError(f"pool not found: {path} (a passages .jsonl[.gz] file or a data folder)")
        return list(read_jsonl(path, Passage))
    return [as_passage(item, f"ex-{i}") for i, item in enumerate(pool)]


class Selector(DensePool):
    """Chooses in-context examples for queries from a pool, with a (trained) dense retriever."""

    def __init__(
        self,
        encoder: Encoder,
        pool: Sequence[Passage],
        index: IndexKind = "flat",
        count_tokens: Callable[[Sequence[str]], list[int]] | None = None,
        tokenizer: str | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self._lock = threading.RLock()  # search and add may come from several threads (the HTTP service)
        self.count_tokens = count_tokens or self._encoder_tokens
        self._journal: Path | None = None
        super().__init__(encoder, pool, index)

    @classmethod
    def load(
        cls,
        model: str | Path,
        pool: PoolSource | None = None,
        index: IndexKind = "flat",
        batch_size: int = 128,
        tokenizer: str | None = None,
        runtime: Runtime = "torch",
        query_max_length: int | None = None,
    ) -> Selector:
        """`model`: a trained llmr retriever folder, `all-minilm-l6-v2` (embedded) or any sentence-transformers
        encoder (folder or hub id), with `pool`: a passages file, a data folder, or the passages themselves.
        Or a folder written by `save` (no pool): its index is loaded, not encoded again.
        `tokenizer` (a Hugging Face tokenizer folder or id) counts tokens for `budget_tokens` as your LLM
        does; by default the encoder's tokenizer approximates it. `runtime`: torch, onnx, onnx-int8 or
        openvino (the encoder's ONNX export); `query_max_length` caps a query's tokens there."""
        if cls.is_saved(model):
            if pool is not None:
                raise ValueError(f"{model} is a saved selector with its own pool: add passages with .add()")
            return cls._restore(Path(model), batch_size, runtime, query_max_length)
        if pool is None:
            raise ValueError(f"{model} is not a saved selector ({SAVED} missing): give a pool")
        encoder = Encoder(str(model), batch_size, runtime, query_max_length)
        return cls(encoder, read_pool(pool), index, _token_counter(tokenizer), tokenizer)

    @staticmethod
    def is_saved(path: str | Path) -> bool:
        return (Path(path) / SAVED).is_file()

    def save(self, path: str | Path) -> Path:
        """Write the pool, its index and what encoded it to a folder, atomically (a kill leaves the old folder
        or the new one), so `Selector.load(path)` serves the same selections without encoding the pool."""
        path = Path(path)

        def write(folder: Path) -> None:
            self.index.save(folder / "index.faiss")
            write_jsonl(folder / "passages.jsonl.gz", self.passages)
            meta = {
                "model": self.encoder.name,
                "encoder": self.encoder.fingerprint,
                "index": self.kind,
            }  # weights|runtime
            write_json(folder / SAVED, {**meta, "tokenizer": self.tokenizer, "pool_size": len(self.passages)})

        with self._lock:
            publish(path, write)
        return path

    def keep_additions(self, path: str | Path) -> None:
        """From now on, append each added passage to `path`/added.jsonl (flushed to disk before `add` returns),
        so a selector saved at `path` and loaded again still has it."""
        self._journal = Path(path) / JOURNAL

    @classmethod
    def _restore(cls, path: Path, batch_size: int, runtime: Runtime, query_max_length: int | None) -> Selector:
        meta = json.loads((path / SAVED).read_text(encoding="utf-8"))
        encoder = Encoder(meta["model"], batch_size, runtime, query_max_length)
        if encoder.fingerprint.partition("|")[0] != meta["encoder"].partition("|")[0]:  # the runtime may change
            raise ValueError(
                f"{path} was encoded by other weights than {meta['model']} has now: build it again from the pool"
            )
        self = cls(encoder, [], meta["index"], _token_counter(meta["tokenizer"]), meta["tokenizer"])
        try:
            self._loaded(VectorIndex.load(path / "index.faiss"), list(read_jsonl(path / "passages.jsonl.gz", Passage)))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if (path / JOURNAL).exists():
            self.add([p for p in _read_journal(path / JOURNAL) if p.id not in self._ids])  # a kill may repeat some
            self.save(path)  # the additions join the index (and a torn last line goes): the next start encodes nothing
        return self

    # -- the pool --------------------------------------------------------------------------------

    def add(self, passages: Iterable[Passage | Mapping[str, Any]]) -> int:  # type: ignore[override]
        """Encode and index new passages (mappings as `as_passage` reads them; ids must be new)."""
        with self._lock:
            start = len(self.passages)
            return super().add([as_passage(p, f"ex-{start + i}") for i, p in enumerate(passages)])

    def _keep(self, passages: Sequence[Passage]) -> None:
        if self._journal is not None:
            with open(self._journal, "a", encoding="utf-8") as fh:
                fh.writelines(p.model_dump_json() + "\n" for p in passages)
                fh.flush()
                os.fsync(fh.fileno())

    def info(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder.fingerprint,
            "pool_size": len(self.passages),
            "tasks": {t: len(rows) for t, rows in sorted(self.rows.items())},
            "index": self.kind,
            "dim": self.index.dim,
            "fingerprint": self.fingerprint,
        }

    # -- selection -------------------------------------------------------------------------------

    def select(
        self,
        query: str,
        k: int = 8,
        task: str | None = None,
        budget_tokens: int | None = None,
        diversity: float | None = None,
        balance_labels: bool = False,
        order: Order = "best_first",
    ) -> list[Example]:
        """The k examples for one query (those that fit `budget_tokens` with the query), in `order`."""
        return self.select_many([query], k, task, budget_tokens, diversity, balance_labels, order)[0]

    def select_many(
        self,
        queries: Sequence[str],
        k: int = 8,
        task: str | Sequence[str | None] | None = None,
        budget_tokens: int | None = None,
        diversity: float | None = None,
        balance_labels: bool = False,
        order: Order = "best_first",
    ) -> list[list[Example]]:
        """`select` for many queries with one encoder pass; `task` is one task for all, or one per query."""
        if order not in ("best_first", "best_last"):
            raise ValueError(f"order must be best_first or best_last, not {order!r}")
        per_query = [task] * len(queries) if task is None or isinstance(task, str) else list(task)
        if len(per_query) != len(queries):
            raise ValueError(f"{len(per_query)} tasks for {len(queries)} queries")
        with self._lock:
            chosen = self.choose(queries, per_query, k, diversity, balance_labels) if queries else []
        out = []
        for examples, query in zip(chosen, queries, strict=True):
            if budget_tokens is not None:
                texts = [e.passage.contents for e in examples]
                examples = examples[: examples_within_budget(texts, query, budget_tokens, self.count_tokens)]
            out.append(examples[::-1] if order == "best_last" else examples)
        return out

    def build_prompt(self, query: str, k: int = 8, **options: Any) -> str:
        """The LLM-R prompt: the selected examples (by default the best last), then the query."""
        return self.build_prompts([query], k, **options)[0]

    def build_prompts(
        self, queries: Sequence[str], k: int = 8, order: Order = "best_last", **options: Any
    ) -> list[str]:
        return [
            build_prompt([e.passage.contents for e in examples], query)
            for query, examples in zip(queries, self.select_many(queries, k, order=order, **options), strict=True)
        ]

    def _encoder_tokens(self, texts: Sequence[str]) -> list[int]:
        tok = self.encoder.tokenizer
        return [len(ids) for ids in tok(list(texts), add_special_tokens=False)["input_ids"]]


def _token_counter(tokenizer: str | None) -> Callable[[Sequence[str]], list[int]] | None:
    if not tokenizer:
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    return lambda texts: [len(ids) for ids in tok(list(texts), add_special_tokens=False).input_ids]


def _read_journal(path: Path) -> list[Passage]:
    """The passages in an additions journal; a last line cut short by a kill is dropped (its `add` never returned)."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out = []
    for number, line in enumerate(lines, 1):
        try:
            out.append(Passage.model_validate_json(line))
        except ValueError as exc:
            if number < len(lines):
                raise ValueError(f"{path}:{number}: not a passage ({exc.errors()[0]['msg']})") from None
    return out
