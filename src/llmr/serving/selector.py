"""`llmr.Selector`: a trained retriever (or any sentence-transformers encoder) over a pool of passages
(labelled training examples, LLM-R's `passages.jsonl.gz`), choosing in-context examples for new queries.

    selector = Selector.load("runs/quality/pipeline/retriever", pool="runs/.../passages.jsonl.gz")
    selector.select("Review: a gem of a film. Positive or negative?", k=4, task="sst2")
    selector.build_prompt(query, k=4, budget_tokens=512)
    selector.add([{"query": "...", "answer": "...", "task_name": "sst2"}])   # no index rebuild
    selector.save("runs/selector"); Selector.load("runs/selector")            # no re-encoding

Search: FAISS over normalised embeddings (cosine), exact (`flat`) or approximate (`hnsw`), the top
`max(40, 4k)` of the pool (or of one task's items); then optionally MMR over those candidates
(`diversity`: 0 = by similarity only) and label balance (round-robin over answers).

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
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmr.base.encoders import Encoder
from llmr.base.files import publish, write_json
from llmr.base.index import IndexKind, VectorIndex
from llmr.base.manifest import config_hash
from llmr.base.runtime import Runtime
from llmr.candidates.dense import pool_fingerprint
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl, write_jsonl
from llmr.data.schema import Passage
from llmr.evaluation.selectors import TOP_N, Example
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


def mmr(sims: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> list[int]:
    """Maximal marginal relevance over candidates (their query similarities and vectors): positions,
    each next one maximising (1 - diversity) * its similarity to the query - diversity * its highest
    similarity to those already picked."""
    chosen: list[int] = []
    closest = np.full(len(sims), -np.inf)
    for _ in range(min(k, len(sims))):
        penalty = np.where(np.isinf(closest), 0.0, closest)
        value = (1 - diversity) * sims - diversity * penalty
        value[chosen] = -np.inf
        best = int(np.argmax(value))
        chosen.append(best)
        closest = np.maximum(closest, vectors @ vectors[best])
    return chosen


def balanced(order: Sequence[int], labels: Sequence[str], k: int) -> list[int]:
    """Round-robin over labels (by the rank of each label's best item), keeping rank order within a label."""
    queues: dict[str, list[int]] = defaultdict(list)
    for i in order:
        queues[labels[i]].append(i)
    out: list[int] = []
    while len(out) < min(k, len(order)):
        for queue in queues.values():
            if queue and len(out) < k:
                out.append(queue.pop(0))
    return out


class Selector:
    """Chooses in-context examples for queries from a pool, with a (trained) dense retriever."""

    def __init__(
        self,
        encoder: Encoder,
        pool: Sequence[Passage],
        index: IndexKind = "flat",
        count_tokens: Callable[[Sequence[str]], list[int]] | None = None,
        tokenizer: str | None = None,
    ) -> None:
        self.encoder = encoder
        self.kind = index
        self.tokenizer = tokenizer
        self.passages: list[Passage] = []
        self._ids: set[str] = set()
        self._by_task: dict[str, list[int]] = defaultdict(list)
        self._lock = threading.RLock()  # search and add may come from several threads (the HTTP service)
        dim = encoder.encode_documents(["dimension"]).shape[1]
        self.index = VectorIndex(dim, index)
        self.count_tokens = count_tokens or self._encoder_tokens
        self._fingerprint: str | None = None
        self._journal: Path | None = None
        self.add(pool)

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
        self.index = VectorIndex.load(path / "index.faiss")
        passages = list(read_jsonl(path / "passages.jsonl.gz", Passage))
        if len(passages) != len(self.index):
            raise ValueError(f"{path}: {len(passages)} passages but {len(self.index)} vectors; build it again")
        self._register(passages)
        if (path / JOURNAL).exists():
            self.add([p for p in _read_journal(path / JOURNAL) if p.id not in self._ids])  # a kill may repeat some
            self.save(path)  # the additions join the index (and a torn last line goes): the next start encodes nothing
        return self

    # -- the pool --------------------------------------------------------------------------------

    def add(self, passages: Iterable[Passage | Mapping[str, Any]]) -> int:
        """Encode and index new passages (ids must be new); returns how many were added."""
        with self._lock:
            start = len(self.passages)
            items = [as_passage(p, f"ex-{start + i}") for i, p in enumerate(passages)]
            ids = [p.id for p in items]
            clash = next((i for i in ids if i in self._ids), None) or next(
                (i for i, n in Counter(ids).items() if n > 1), None
            )
            if clash is not None:
                raise ValueError(f"passage id {clash!r} is already in the pool")
            if not items:
                return 0
            vectors = self.encoder.encode_documents([p.contents for p in items])
            if self._journal is not None:
                with open(self._journal, "a", encoding="utf-8") as fh:
                    fh.writelines(p.model_dump_json() + "\n" for p in items)
                    fh.flush()
                    os.fsync(fh.fileno())
            self.index.add(vectors)
            self._register(items)
            return len(items)

    def _register(self, items: Sequence[Passage]) -> None:
        start = len(self.passages)
        for offset, p in enumerate(items):
            self._by_task[p.task_name].append(start + offset)
        self.passages.extend(items)
        self._ids.update(p.id for p in items)
        self._fingerprint = None

    @property
    def fingerprint(self) -> str:
        """What selections depend on: the encoder's weights and the pool's contents."""
        if self._fingerprint is None:
            pool = pool_fingerprint(self.passages)
            self._fingerprint = config_hash({"encoder": self.encoder.fingerprint, "pool": pool})
        return self._fingerprint

    @property
    def tasks(self) -> list[str]:
        return sorted(self._by_task)

    def __len__(self) -> int:
        return len(self.passages)

    def info(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder.fingerprint,
            "pool_size": len(self.passages),
            "tasks": {t: len(rows) for t, rows in sorted(self._by_task.items())},
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
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k}")
        if diversity is not None and not 0.0 <= diversity <= 1.0:
            raise ValueError(f"diversity must be in [0, 1], not {diversity}")
        if order not in ("best_first", "best_last"):
            raise ValueError(f"order must be best_first or best_last, not {order!r}")
        per_query = [task] * len(queries) if task is None or isinstance(task, str) else list(task)
        if len(per_query) != len(queries):
            raise ValueError(f"{len(per_query)} tasks for {len(queries)} queries")
        unknown = {t for t in per_query if t is not None and t not in self._by_task}
        if unknown:
            raise ValueError(f"unknown task(s) {sorted(unknown)}: the pool has {', '.join(self.tasks)}")
        if not queries:
            return []
        top_n = max(TOP_N, 4 * k) if (diversity or balance_labels) else k
        with self._lock:
            vectors = self.encoder.encode_queries(queries)
            found: list[tuple[np.ndarray, np.ndarray]] = [None] * len(queries)  # type: ignore[list-item]
            for t, rows in _group(per_query).items():
                scores, docs = self._search(vectors[rows], top_n, t)
                for j, row in enumerate(rows):
                    keep = docs[j] >= 0
                    found[row] = (docs[j][keep], scores[j][keep])
            out = []
            for (docs, scores), query in zip(found, queries, strict=True):
                ranked = list(range(len(docs)))
                if diversity:
                    ranked = mmr(scores, self.index.vectors(docs), k, diversity)
                if balance_labels:
                    ranked = balanced(ranked, [self.passages[d].contents.rpartition("\n")[2] for d in docs], k)
                chosen = [Example(self.passages[int(docs[i])], float(scores[i])) for i in ranked[:k]]
                if budget_tokens is not None:
                    texts = [e.passage.contents for e in chosen]
                    chosen = chosen[: examples_within_budget(texts, query, budget_tokens, self.count_tokens)]
                out.append(chosen[::-1] if order == "best_last" else chosen)
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

    def _search(self, vectors: np.ndarray, n: int, task: str | None) -> tuple[np.ndarray, np.ndarray]:
        if task is None:
            return self.index.search(vectors, n)
        return self.index.search(vectors, n, self._by_task[task], name=task)

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


def _group(tasks: Sequence[str | None]) -> dict[str | None, list[int]]:
    rows: dict[str | None, list[int]] = defaultdict(list)
    for i, t in enumerate(tasks):
        rows[t].append(i)
    return rows
