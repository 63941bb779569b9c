"""Serving benchmark: `Selector.select` latency by pool size and index, and the HTTP service under load.

    python benchmarks/serving.py                      # pools 10k (real) / 100k / 1M, HTTP 10k requests
    python benchmarks/serving.py --sizes 10000 --requests 2000   # quicker

Select latency: one query at a time (as a request arrives), encode (the embedded MiniLM) + search.
Pools up to --real-max are real pool texts from ../shared/data (encoded once); larger pools are
synthetic: real embeddings plus Gaussian noise, normalised, so they keep the real data's clusters.
Approximate indexes (HNSW) are compared with exact search (flat) by recall@k of the same queries.

HTTP: `llmr serve` in its own process on 127.0.0.1, a load generator with --concurrency open
requests; 10% of the requests are malformed (bad JSON, unknown fields, k over the limit, too many
queries) and must get their 4xx while the valid ones get 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 8


def real_texts(n: int, seed: int = 0) -> tuple[list[dict], list[str]]:
    """n pool items and 500 test queries, spread over every task in the offline data."""
    from llmr.data.build import pool_item, sample, task_records
    from llmr.data.sources import open_source
    from llmr.tasks import resolve_tasks

    source = open_source("shared")
    tasks = resolve_tasks("all-available", available=source.available())
    per_task = 2 * n // len(tasks) + 1  # some tasks have fewer rows: sample more, shuffle, keep n
    pool, queries = [], []
    for task in tasks:
        train = sample(list(task_records(source, task, "train")), per_task, seed, task.name)
        pool += [pool_item(task, r).model_dump() for r in train]
        if source.has(task, "test"):
            queries += [r.query for r in sample(list(task_records(source, task, "test")), 20, seed, task.name)]
    random.Random(seed).shuffle(pool)
    return pool[:n], random.Random(seed).sample(queries, min(500, len(queries)))


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def bench_select(sizes: list[int], real_max: int, n_queries: int, ef: list[int]) -> list[dict]:
    import faiss

    from llmr.candidates.dense import VectorIndex
    from llmr.serving import Selector

    pool, queries = real_texts(min(max(sizes), real_max))
    queries = queries[:n_queries]
    selector = Selector.load("all-minilm-l6-v2", pool)
    base = selector.index.vectors(range(len(selector.index)))
    encode_ms = []
    for q in queries:  # one at a time, as requests arrive
        t = time.perf_counter()
        selector.encoder.encode_queries([q])
        encode_ms.append(1000 * (time.perf_counter() - t))
    qvec = selector.encoder.encode_queries(queries)
    rows = []
    rng = np.random.default_rng(0)
    for size in sizes:
        if size <= len(base):
            vectors, kind = base[:size], "real"
        else:
            noise = rng.standard_normal((size, base.shape[1]), dtype=np.float32) * 0.02
            vectors = base[rng.integers(0, len(base), size)] + noise
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            kind = "synthetic"
        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors)
        _, truth = flat.search(qvec, K)
        indexes = [("flat", flat, 0.0, None)]
        t = time.perf_counter()
        hnsw = VectorIndex(vectors.shape[1], "hnsw").faiss
        hnsw.add(vectors)
        build = time.perf_counter() - t
        indexes += [(f"hnsw ef={e}", hnsw, build, e) for e in ef]
        for name, index, build_s, e in indexes:
            if e is not None:
                index.hnsw.efSearch = e
            search_ms, total_ms, found = [], [], []
            for i, q in enumerate(qvec):
                t = time.perf_counter()
                _, ids = index.search(q[None], K)
                search_ms.append(1000 * (time.perf_counter() - t))
                total_ms.append(encode_ms[i] + search_ms[-1])
                found.append(ids[0])
            recall = float(np.mean([len(set(f) & set(g)) / K for f, g in zip(found, truth, strict=True)]))
            rows.append(
                {
                    "pool": size,
                    "texts": kind,
                    "index": name,
                    "build_s": build_s,
                    "search_p50": percentiles(search_ms)[0],
                    "search_p99": percentiles(search_ms)[1],
                    "select_p50": percentiles(total_ms)[0],
                    "select_p99": percentiles(total_ms)[1],
                    "recall": recall,
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    rows.append({"encode_p50": percentiles(encode_ms)[0], "encode_p99": percentiles(encode_ms)[1]})
    return rows


def malformed(i: int) -> tuple[bytes, int]:
    """A bad request body and the status it must get."""
    kind = i % 4
    if kind == 0:
        return b"{not json", 422
    if kind == 1:
        return json.dumps({"query": "x", "kk": 3}).encode(), 422
    if kind == 2:
        return json.dumps({"query": "x", "k": 1000}).encode(), 422
    return json.dumps({"queries": ["x"] * 300}).encode(), 413


async def load(url: str, queries: list[str], requests: int, concurrency: int) -> dict:
    import httpx

    statuses: dict[int, int] = {}
    wrong, latencies = [], []
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            if i % 10 == 9:
                body, expect = malformed(i // 10)
            else:
                body, expect = json.dumps({"query": queries[i % len(queries)], "k": K}).encode(), 200
            t = time.perf_counter()
            try:
                r = await client.post("/v1/select", content=body, headers={"content-type": "application/json"})
                status = r.status_code
                if status == 200 and len(r.json()["results"][0]) != K:
                    wrong.append(i)
            except httpx.HTTPError:
                status = -1
            latencies.append(1000 * (time.perf_counter() - t))
            statuses[status] = statuses.get(status, 0) + 1
            if status != expect:
                wrong.append(i)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": requests / seconds,
        "p50_ms": p50,
        "p99_ms": p99,
        "statuses": statuses,
        "wrong": len(wrong),
    }


def wait_until_up(server: subprocess.Popen, url: str, timeout_s: float = 900) -> None:
    """Poll `url`/healthz until `llmr serve` (encoding its pool) answers."""
    import httpx

    deadline = time.time() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.time() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.5)


def bench_http(pool_size: int, requests: int, concurrency: int, port: int) -> dict:
    import httpx

    pool, queries = real_texts(pool_size, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        from llmr.data.jsonl import write_jsonl

        path = Path(tmp) / "passages.jsonl"
        write_jsonl(path, pool)
        cmd = [sys.executable, "-m", "llmr.cli", "serve", "--pool", str(path), "--port", str(port)]
        server = subprocess.Popen(cmd, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        try:
            wait_until_up(server, f"http://127.0.0.1:{port}")
            asyncio.run(load(f"http://127.0.0.1:{port}", queries, 200, concurrency))  # warm-up
            result = asyncio.run(load(f"http://127.0.0.1:{port}", queries, requests, concurrency))
            result["alive_after"] = httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"pool": pool_size, "concurrency": concurrency, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--real-max", type=int, default=10_000, help="Pools up to this size use real texts.")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--ef", default="32,64,128", help="HNSW efSearch values to compare.")
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--http-pool", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    import torch

    print(f"torch threads: {torch.get_num_threads()}, cores: {os.cpu_count()}, k = {K}\n")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows = bench_select(sizes, args.real_max, args.queries, [int(e) for e in args.ef.split(",")])
    enc = rows.pop()
    print(f"query encoding alone (MiniLM, one query): p50 {enc['encode_p50']:.2f} ms, p99 {enc['encode_p99']:.2f} ms\n")
    print("| pool | texts | index | build (s) | search p50 / p99 (ms) | select p50 / p99 (ms) | recall@8 vs flat |")
    print("|---:|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['pool']:,} | {r['texts']} | {r['index']} | {r['build_s']:.1f} | {r['search_p50']:.2f} / "
            f"{r['search_p99']:.2f} | {r['select_p50']:.2f} / {r['select_p99']:.2f} | {r['recall']:.3f} |"
        )
    if args.requests:
        h = bench_http(args.http_pool, args.requests, args.concurrency, args.port)
        print("\n| HTTP pool | concurrency | requests | req/s | p50 (ms) | p99 (ms) | statuses | wrong | alive |")
        print("|---:|---:|---:|---:|---:|---:|---|---:|---|")
        print(
            f"| {h['pool']:,} | {h['concurrency']} | {h['requests']:,} | {h['rps']:.0f} | {h['p50_ms']:.1f} | "
            f"{h['p99_ms']:.1f} | {h['statuses']} | {h['wrong']} | {h['alive_after']} |"
        )


if __name__ == "__main__":
    main()
