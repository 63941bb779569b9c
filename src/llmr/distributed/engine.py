"""Where LLM work runs: in this process (`LocalEngine`) or on Ray actors (`RayEngine`).

Both expose the same `map(fn, items)`: `fn(llm, item)` for each item, results yielded as
(index, result) in completion order. Callers keep the work units (score chunks, evaluation chunks)
and the caches exactly as in a single-process run and commit each result as it arrives, so a Ray run
writes what a local run writes, and a killed driver resumes from the cache like any other run.

Ray's own machinery handles failures: actors restart when their process dies and the tasks they held
are retried on the new incarnation (`max_restarts`, `max_task_retries`). No file polling.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from llmr.llm.base import LLM

T = TypeVar("T")
R = TypeVar("R")

LLMFactory = Callable[[], LLM]  # picklable (a functools.partial of load_llm): each actor builds its own replica


class Engine(Protocol):
    fingerprint: str  # the LLM's: part of every cache key

    def map(self, fn: Callable[[LLM, T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]: ...

    def close(self) -> None: ...


class LocalEngine:
    """The LLM in this process: items run one after another, in order."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm
        self.fingerprint = llm.fingerprint

    def map(self, fn: Callable[[LLM, T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]:
        for i, item in enumerate(items):
            yield i, fn(self.llm, item)

    def close(self) -> None:
        pass


def as_engine(llm: LLM | Engine) -> Engine:
    return LocalEngine(llm) if isinstance(llm, LLM) else llm


class _Worker:
    """One LLM replica in a Ray actor (Ray sets its thread count to the actor's CPUs)."""

    def __init__(self, factory: LLMFactory) -> None:
        self.llm = factory()

    def fingerprint(self) -> str:
        return self.llm.fingerprint

    def pid(self) -> int:
        return os.getpid()

    def run(self, fn: Callable[[LLM, Any], Any], item: Any) -> Any:
        return fn(self.llm, item)


class RayEngine:
    """LLM replicas on Ray actors: one per `cpus_per_worker` CPUs, or per `gpus_per_worker` GPUs.

    `address` joins a running cluster ("auto", "ray://host:10001", ...); without it a local cluster is
    started (limited to `num_cpus` when given). `workers` defaults to as many as the cluster holds.
    At most `in_flight` items (default 2 per worker) are submitted at once, so items may be built lazily
    (the driver prepares the next evaluation chunk while actors run the current ones).
    """

    def __init__(
        self,
        factory: LLMFactory,
        workers: int | None = None,
        cpus_per_worker: float = 1,
        gpus_per_worker: float = 0,
        address: str | None = None,
        num_cpus: int | None = None,
        max_restarts: int = 3,
        in_flight: int | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("the Ray engine needs Ray: pip install 'llmr[ray]'") from None
        self._ray = ray
        self._owns_cluster = not ray.is_initialized()
        if self._owns_cluster:
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
            if address:
                options["address"] = address
            elif num_cpus:
                options["num_cpus"] = num_cpus
            ray.init(**options)
        if workers is None:
            resources = ray.cluster_resources()
            per = [resources.get("GPU", 0) / gpus_per_worker] if gpus_per_worker else []
            workers = max(1, int(min([resources.get("CPU", 1) / cpus_per_worker, *per])))
        actor = ray.remote(_Worker).options(
            num_cpus=cpus_per_worker,
            num_gpus=gpus_per_worker,
            max_restarts=max_restarts,
            max_task_retries=max_restarts,
        )
        self.actors = [actor.remote(factory) for _ in range(workers)]
        fingerprints = set(ray.get([a.fingerprint.remote() for a in self.actors]))
        if len(fingerprints) != 1:
            raise RuntimeError(f"the workers loaded different models: {sorted(fingerprints)}")
        self.fingerprint = fingerprints.pop()
        self.in_flight = in_flight or 2 * workers

    def map(self, fn: Callable[[LLM, T], R], items: Iterable[T]) -> Iterator[tuple[int, R]]:
        ray = self._ray
        pending: dict[Any, tuple[int, int]] = {}  # ref -> (item index, actor slot)
        load = dict.fromkeys(range(len(self.actors)), 0)
        source = enumerate(items)
        exhausted = False
        while True:
            while not exhausted and len(pending) < self.in_flight:
                try:
                    i, item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                slot = min(load, key=load.__getitem__)  # the least busy actor
                load[slot] += 1
                pending[self.actors[slot].run.remote(fn, item)] = (i, slot)
            if not pending:
                return
            [ref], _ = ray.wait(list(pending), num_returns=1)
            i, slot = pending.pop(ref)
            load[slot] -= 1
            yield i, ray.get(ref)

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []
        if self._owns_cluster:
            self._ray.shutdown()

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
