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

import base64
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmr.base.encoders import Encoder
from llmr.base.files import publish, write_json
from llmr.base.index import IndexKind, VectorIndex
from llmr.base.runtime import Runtime
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl, write_jsonl
from llmr.data.schema import Passage
from llmr.evaluation.selectors import DensePool, Example, Where
from llmr.prompt import build_prompt, examples_within_budget

PoolSource = str | Path | Iterable[Passage | Mapping[str, Any]]
Order = Literal["best_first", "best_last"]
SAVED = "selector.json"  # a saved selector: this, index.faiss, passages.jsonl.gz
JOURNAL = "added.jsonl"  # passages added since it was saved, with their vectors, one per "\n"-ended line

log = logging.getLogger(__name__)


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
    extra = {key: v for key, v in item.items() if key not in ("id", "contents", "query", "answer", "task_name")}
    # other fields stay as metadata that `where` can filter on
    return Passage(
        **extra, id=item.get("id", default_id), contents=contents, task_name=item.get("task_name") or "default"
    )


def read_pool(pool: PoolSource, dedupe: bool = False) -> list[Passage]:
    """A passages file (`.jsonl[.gz]`), a data folder holding one, or the items themselves; with `dedupe`,
    an item whose task and contents an earlier one has is left out (it would take two of k places)."""
    items = _read_pool(pool)
    if not dedupe:
        return items
    unique = list({(p.task_name, p.contents): p for p in reversed(items)}.values())[::-1]  # the first of each
    if len(unique) < len(items):
        log.info("left out %d duplicate pool items (same task and contents)", len(items) - len(unique))
    return unique


def _read_pool(pool: PoolSource) -> list[Passage]:
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
        dedupe: bool = False,
    ) -> Selector:
        """`model`: a trained llmr retriever folder, `all-minilm-l6-v2` (embedded) or any sentence-transformers
        encoder (folder or hub id), with `pool`: a passages file, a data folder, or the passages themselves.
        Or a folder written by `save` (no pool): its index is loaded, not encoded again.
        `tokenizer` (a Hugging Face tokenizer folder or id) counts tokens for `budget_tokens` as your LLM
        does; by default the encoder's tokenizer approximates it. `runtime`: torch, onnx, onnx-int8 or
        openvino (the encoder's ONNX export); `query_max_length` caps a query's tokens there. `dedupe` leaves
        out pool items whose task and contents an earlier item has."""
        if cls.is_saved(model):
            if pool is not None:
                raise ValueError(f"{model} is a saved selector with its own pool: add passages with .add()")
            return cls._restore(Path(model), batch_size, runtime, query_max_length)
        if pool is None:
            raise ValueError(f"{model} is not a saved selector ({SAVED} missing): give a pool")
        encoder = Encoder(str(model), batch_size, runtime, query_max_length)
        return cls(encoder, read_pool(pool, dedupe), index, _token_counter(tokenizer), tokenizer)

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
        """From now on, append each added passage and its vector to `path`/added.jsonl (fsynced before `add`
        returns), so a selector saved at `path` and loaded again has it, without encoding it again."""
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
            self._replay(path / JOURNAL)
            try:
                self.save(path)  # fold the journal into the saved index: it stays short
            except OSError as exc:  # e.g. a full disk: serve anyway, the journal still holds every addition
                log.warning("%s: could not fold the additions into its index (%s); the journal stays", path, exc)
        return self

    def _replay(self, journal: Path) -> None:
        """Add the journal's passages with the vectors stored beside them (none encoded again, except
        lines from an older journal that has no vectors)."""
        records = [(p, v) for p, v in _read_journal(journal) if p.id not in self._ids]  # a kill may repeat some
        stored = [(p, v) for p, v in records if v is not None and v.shape == (self.index.dim,)]
        if stored:
            self.index.add(np.stack([v for _, v in stored]))
            self._register([p for p, _ in stored])
        self.add([p for p, v in records if v is None or v.shape != (self.index.dim,)])

    # -- the pool --------------------------------------------------------------------------------

    def add(self, passages: Iterable[Passage | Mapping[str, Any]]) -> int:  # type: ignore[override]
        """Encode and index new passages (mappings as `as_passage` reads them; ids must be new)."""
        with self._lock:
            start = len(self.passages)
            return super().add([as_passage(p, f"ex-{start + i}") for i, p in enumerate(passages)])

    def _keep(self, passages: Sequence[Passage], vectors: np.ndarray) -> None:
        if self._journal is not None:  # before the passages join the index: a failed write adds nothing
            _append(self._journal, b"".join(_record(p, v) for p, v in zip(passages, vectors, strict=True)))

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
        where: Where | None = None,
    ) -> list[Example]:
        """The k examples for one query (those that fit `budget_tokens` with the query), in `order`; only
        pool items `where` lets through (`{"field": value, ...}` or a test of a `Passage`). Each example
        carries its score and its rank by similarity (which MMR or label balance may reorder)."""
        return self.select_many([query], k, task, budget_tokens, diversity, balance_labels, order, where)[0]

    def select_many(
        self,
        queries: Sequence[str],
        k: int = 8,
        task: str | Sequence[str | None] | None = None,
        budget_tokens: int | None = None,
        diversity: float | None = None,
        balance_labels: bool = False,
        order: Order = "best_first",
        where: Where | None = None,
    ) -> list[list[Example]]:
        """`select` for many queries with one encoder pass; `task` is one task for all, or one per query."""
        if order not in ("best_first", "best_last"):
            raise ValueError(f"order must be best_first or best_last, not {order!r}")
        per_query = [task] * len(queries) if task is None or isinstance(task, str) else list(task)
        if len(per_query) != len(queries):
            raise ValueError(f"{len(per_query)} tasks for {len(queries)} queries")
        with self._lock:
            chosen = self.choose(queries, per_query, k, diversity, balance_labels, where=where) if queries else []
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


def _record(passage: Passage, vector: np.ndarray) -> bytes:
    """One journal line: the passage and its vector (float32, base64), so a restart encodes nothing.
    JSON escapes every "\n" inside a string, so a line ends only where the record does."""
    encoded = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return json.dumps({"passage": passage.model_dump(), "vector": encoded}, ensure_ascii=False).encode() + b"\n"


def _append(path: Path, data: bytes) -> None:
    """Append `data` and fsync it, or leave the file as it was: a write cut short (a full disk) must not
    leave a torn line that the next record would be glued to."""
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = _drop_torn_tail(fd, path)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
    if created:  # the new file's name must survive a power cut too
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _drop_torn_tail(fd: int, path: Path) -> int:
    """Truncate a last record that lacks its newline (a kill mid-write: its `add` never returned), with a
    warning; returns the size after. Checked before each append too, in case a failed write was not undone."""
    size = os.fstat(fd).st_size
    if size and os.pread(fd, 1, size - 1) != b"\n":
        keep = os.pread(fd, size, 0).rfind(b"\n") + 1
        log.warning("%s: dropped a torn last record of %d bytes (never acknowledged)", path, size - keep)
        os.truncate(path, keep)
        size = keep
    return size


def _read_journal(path: Path) -> list[tuple[Passage, np.ndarray | None]]:
    """The passages in an additions journal, with their vectors (None in a journal written before vectors
    were kept). Lines are split on "\n" only (not `str.splitlines`, which also splits on U+2028, U+0085...);
    a torn last one is dropped."""
    with open(path, "rb") as fh:
        _drop_torn_tail(fh.fileno(), path)
        lines = fh.read().split(b"\n")[:-1]
    out: list[tuple[Passage, np.ndarray | None]] = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            if "vector" not in record:  # a journal from before vectors were kept
                out.append((Passage.model_validate(record), None))
                continue
            vector = np.frombuffer(base64.b64decode(record["vector"], validate=True), dtype="<f4")
            out.append((Passage.model_validate(record["passage"]), vector.astype(np.float32)))
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"{path}:{number}: not a journal record ({exc})") from None
    return out
