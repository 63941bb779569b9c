"""Serving benchmark: `Selector.select` latency by pool size and index, and the HTTP service under load.

    python benchmarks/serving.py                      # pools 10k (real) / 100k / 1M, HTTP 10k requests
    python benchmarks/serving.py --sizes 10000 --requests 2000   # quicker
    python benchmarks/serving.py --runtimes torch,openvino --clients 1,8,32,128   # runtimes side by side
    python benchmarks/serving.py --runtimes torch,openvino,openvino:128,openvino:64 --requests 0  # query caps
    python benchmarks/serving.py --sizes '' --clients 1,8,32,128 --max-concurrent-requests 16,32,64  # shed load
    python benchmarks/serving.py --sizes '' --load-generator wrk --duration 10   # the ceiling, from wrk (make wrk)

Select latency: one query at a time (as a request arrives), encode (the embedded MiniLM, per runtime) + search.
A --runtimes entry RUNTIME:N caps a query's tokens at N (`llmr serve --query-max-length N`; onnx/openvino).
Pools up to --real-max are real pool texts from ../shared/data (encoded once); larger pools are
synthetic: real embeddings plus Gaussian noise, normalised, so they keep the real data's clusters.
Approximate indexes (HNSW) are compared with exact search (flat) by recall@k of the same queries.

HTTP: `llmr serve` in its own process on 127.0.0.1, a load generator with --clients open
requests. Each row's share is its req/s over the ceiling: the most req/s of GET /healthz (no encoder, no
JSON body) against the same server in the same run.
- `--load-generator python` (the default): an asyncio httpx client, --requests per row. 10% of the requests
  are malformed (bad JSON, unknown fields, k over the limit, too many queries) and must get their 4xx while
  the valid ones get 200. It shares the 2 cores with the server, so its own cost (the client CPU column)
  lowers the ceiling: the /healthz row is measured at the largest client count only.
- `--load-generator wrk`: wrk (compiled C, one thread; `make wrk` installs it) for --duration seconds a row,
  running benchmarks/serving_wrk.lua: valid select bodies only (which response answers which request is not
  known in wrk's Lua, so a malformed request's own 4xx could not be checked: that stays with the Python
  client), and /healthz at every client count.
Shed load (issue 35): past `llmr serve --max-concurrent-requests` (each value given is its own server) a
request gets 503 + Retry-After; the client waits that long, as a well-behaved one would, and sends its next.
Each row counts the 503s; its req/s is over the admitted requests only, and so are p50 / p99 with the Python
client. wrk's percentiles include the 503s (answered at once, so they pull p50 down): read shed-load latency
from the Python client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 8
WRK_SCRIPT = Path(__file__).with_name("serving_wrk.lua")
NO_WRK = "wrk is not installed: make wrk (or apt-get install -y wrk), or leave out --load-generator wrk"


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


def runtime_and_cap(entry: str) -> tuple[str, int | None]:
    """A --runtimes entry: RUNTIME, or RUNTIME:N (queries capped at N tokens)."""
    from llmr.base.runtime import RUNTIMES

    runtime, sep, cap = entry.partition(":")
    if runtime not in RUNTIMES or (sep and (not cap.isdigit() or int(cap) < 8 or runtime == "torch")):
        sys.exit(f"--runtimes {entry!r}: expected RUNTIME or RUNTIME:N (N >= 8, not torch); runtimes: {RUNTIMES}")
    return runtime, int(cap) if sep else None


def percentiles(ms: list[float]) -> tuple[float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def bench_select(
    sizes: list[int], real_max: int, n_queries: int, ef: list[int], runtimes: list[str], model: str
) -> list[dict]:
    import faiss

    from llmr.base.encoders import Encoder
    from llmr.base.index import VectorIndex
    from llmr.serving import Selector

    pool, queries = real_texts(min(max(sizes), real_max))
    queries = queries[:n_queries]
    selector = Selector.load(model, pool)
    base = selector.index.vectors(range(len(selector.index)))
    encode_ms: dict[str, list[float]] = {}
    for entry in runtimes:
        runtime, cap = runtime_and_cap(entry)
        encoder = Encoder(model, runtime=runtime, query_max_length=cap)  # type: ignore[arg-type]
        encoder.encode_queries(queries[:5])  # warm-up
        encode_ms[entry] = []
        for q in queries:  # one at a time, as requests arrive
            t = time.perf_counter()
            encoder.encode_queries([q])
            encode_ms[entry].append(1000 * (time.perf_counter() - t))
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
            search_ms, found = [], []
            for q in qvec:
                t = time.perf_counter()
                _, ids = index.search(q[None], K)
                search_ms.append(1000 * (time.perf_counter() - t))
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
                    **{
                        f"select_{r}": percentiles([e + s for e, s in zip(ms, search_ms, strict=True)])
                        for r, ms in encode_ms.items()
                    },
                    "recall": recall,
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    rows.append({r: percentiles(ms) for r, ms in encode_ms.items()})
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


def valid(query: str) -> bytes:
    return json.dumps({"query": query, "k": K}).encode()


async def load(url: str, queries: list[str], requests: int, concurrency: int, path: str = "/v1/select") -> dict:
    import httpx

    statuses: dict[int, int] = {}
    wrong, latencies = [], []  # latencies: of admitted requests (not 503)
    counter = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            if i % 10 == 9:
                body, expect = malformed(i // 10)
            else:
                body, expect = valid(queries[i % len(queries)]), 200
            t = time.perf_counter()
            try:
                if path == "/healthz":  # the ceiling: no body, no encoder
                    r, expect = await client.get(path), 200
                else:
                    r = await client.post(path, content=body, headers={"content-type": "application/json"})
                status = r.status_code
                if status == 200 and path != "/healthz" and len(r.json()["results"][0]) != K:
                    wrong.append(i)
            except httpx.HTTPError:
                status = -1
            statuses[status] = statuses.get(status, 0) + 1
            if status == 503:  # shed: wait as told, then the next request
                await asyncio.sleep(float(r.headers.get("retry-after", 1)))
                continue
            latencies.append(1000 * (time.perf_counter() - t))
            if status != expect:
                wrong.append(i)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    p50, p99 = percentiles(latencies or [float("nan")])
    return {
        "requests": requests,
        "seconds": seconds,
        "rps": len(latencies) / seconds,  # answered, not shed
        "client_cores": cpu / seconds,  # the load generator's own share of the 2 cores
        "p50_ms": p50,
        "p99_ms": p99,
        "shed": statuses.get(503, 0),
        "statuses": statuses,
        "wrong": len(wrong),
    }


def wrk_load(url: str, queries: list[str], seconds: float, concurrency: int, path: str = "/v1/select") -> dict:
    """`load`'s row from wrk: `concurrency` connections on one thread for `seconds`, valid requests only."""
    with tempfile.TemporaryDirectory() as tmp:
        bodies = Path(tmp) / "bodies.jsonl"  # JSON escapes newlines: one body a line
        bodies.write_bytes(b"\n".join(valid(q) for q in queries) + b"\n")
        script_args = [] if path == "/healthz" else ["--", str(bodies), str(K)]
        cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "--timeout", "60s", "-s", str(WRK_SCRIPT)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)  # the server, a child too, is not reaped yet
        run = subprocess.run([*cmd, url + path, *script_args], capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in run.stdout.splitlines() if x.startswith("LLMR_WRK ")), None)
    if run.returncode or line is None:
        raise RuntimeError(f"wrk gave no result (exit {run.returncode}):\n{run.stdout}{run.stderr}")
    got = json.loads(line.removeprefix("LLMR_WRK "))
    statuses = {int(s): n for s, n in got["statuses"].items()}
    if got["socket_errors"]:
        statuses[-1] = got["socket_errors"]  # as `load` counts them
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "requests": got["responses"],
        "seconds": got["seconds"],
        "rps": (got["responses"] - statuses.get(503, 0)) / got["seconds"],  # answered, not shed
        "client_cores": cpu / got["seconds"],
        "p50_ms": got["p50_ms"],  # of every response, 503s included
        "p99_ms": got["p99_ms"],
        "shed": statuses.get(503, 0),
        "statuses": statuses,
        "wrong": got["wrong"] + statuses.get(-1, 0),
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


def bench_http(
    pool_size: int,
    requests: int,
    clients: list[int],
    port: int,
    runtime: str,
    bound: int | None = None,
    generator: str = "python",
    seconds: float = 10.0,
) -> list[dict]:
    """`llmr serve --runtime RUNTIME [--query-max-length N] [--max-concurrent-requests BOUND]` (`runtime`: a
    --runtimes entry) under load at each client count, then the /healthz ceiling (python: at the largest count;
    wrk: at each); each row's share of it."""
    import httpx

    pool, queries = real_texts(pool_size, seed=1)
    url = f"http://127.0.0.1:{port}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        from llmr.data.jsonl import write_jsonl

        path = Path(tmp) / "passages.jsonl"
        write_jsonl(path, pool)
        cmd = [sys.executable, "-m", "llmr.cli", "serve", "--pool", str(path), "--port", str(port)]
        name, cap = runtime_and_cap(runtime)
        cmd += ["--runtime", name] + (["--query-max-length", str(cap)] if cap else [])
        cmd += ["--max-concurrent-requests", str(bound)] if bound else []
        server = subprocess.Popen(cmd, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        try:
            wait_until_up(server, url)
            asyncio.run(load(url, queries, 200, max(clients)))  # warm-up
            ceiling = clients if generator == "wrk" else [max(clients)]
            for n, route in [(n, "/v1/select") for n in clients] + [(n, "/healthz") for n in ceiling]:
                if generator == "wrk":
                    result = wrk_load(url, queries, seconds, n, route)
                else:
                    result = asyncio.run(load(url, queries, requests, n, route))
                result["alive_after"] = httpx.get(f"{url}/healthz").status_code == 200
                row = {"runtime": runtime, "bound": bound or "default", "route": route, "pool": pool_size}
                rows.append({**row, "generator": generator, "concurrency": n, **result})
                print(json.dumps(rows[-1]), file=sys.stderr)
        finally:
            server.terminate()
            server.wait(timeout=30)
    top = max(r["rps"] for r in rows if r["route"] == "/healthz")
    return [{**r, "share": r["rps"] / top if top else float("nan")} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="Select latency: pool sizes ('' skips).")
    parser.add_argument("--real-max", type=int, default=10_000, help="Pools up to this size use real texts.")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--model", default="all-minilm-l6-v2", help="Select latency: the encoder (e.g. a trained retriever folder)."
    )
    parser.add_argument("--ef", default="32,64,128", help="HNSW efSearch values to compare.")
    parser.add_argument(
        "--runtimes",
        default="torch,openvino",
        help="Encoder runtimes, side by side; RUNTIME:N caps queries at N tokens (e.g. openvino:128).",
    )
    parser.add_argument("--requests", type=int, default=10_000, help="HTTP requests per row (0 skips HTTP).")
    parser.add_argument(
        "--load-generator",
        choices=["python", "wrk"],
        default="python",
        help="python: httpx on the server's cores, with malformed requests; wrk: compiled (make wrk).",
    )
    parser.add_argument("--duration", type=float, default=10.0, help="wrk: seconds per row (--requests is python's).")
    parser.add_argument("--clients", default="1,8,32,128", help="HTTP concurrent clients, one row each.")
    parser.add_argument(
        "--max-concurrent-requests",
        default="",
        help="llmr serve's bounds to compare, e.g. 16,32,64 (default: its own).",
    )
    parser.add_argument("--http-pool", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    if args.requests and args.load_generator == "wrk" and shutil.which("wrk") is None:
        sys.exit(NO_WRK)
    import torch

    runtimes = args.runtimes.split(",")
    for entry in runtimes:
        runtime_and_cap(entry)  # a typo fails here, not after the first runtime's rows
    print(f"torch threads: {torch.get_num_threads()}, cores: {os.cpu_count()}, k = {K}\n")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if sizes:
        ef = [int(e) for e in args.ef.split(",")]
        rows = bench_select(sizes, args.real_max, args.queries, ef, runtimes, args.model)
        enc = rows.pop()
        for r, (p50, p99) in enc.items():
            print(f"query encoding alone ({r}, one query): p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        heads = " | ".join(f"select {r} p50 / p99 (ms)" for r in runtimes)
        print(f"\n| pool | texts | index | build (s) | search p50 / p99 (ms) | {heads} | recall@8 vs flat |")
        print("|---:|---|---|---:|---:|" + "---:|" * len(runtimes) + "---:|")
        for r in rows:
            selects = " | ".join(f"{r[f'select_{x}'][0]:.2f} / {r[f'select_{x}'][1]:.2f}" for x in runtimes)
            print(
                f"| {r['pool']:,} | {r['texts']} | {r['index']} | {r['build_s']:.1f} | {r['search_p50']:.2f} / "
                f"{r['search_p99']:.2f} | {selects} | {r['recall']:.3f} |"
            )
    if args.requests:
        clients = [int(c) for c in args.clients.split(",")]
        bounds = [int(b) for b in args.max_concurrent_requests.split(",") if b] or [None]
        head = "runtime | bound | route | pool | generator | clients | requests | admitted req/s | share of ceiling"
        head += " | p50 / p99 ms | 503s | client CPU | statuses | wrong | ok"
        print(f"\n| {head} |\n|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|")
        gen, runs = args.load_generator, [(r, b) for r in runtimes for b in bounds]
        http = [
            bench_http(args.http_pool, args.requests, clients, args.port, r, b, gen, args.duration) for r, b in runs
        ]
        for h in [h for rows in http for h in rows]:
            cells = [h["runtime"], h["bound"], h["route"], f"{h['pool']:,}", h["generator"], h["concurrency"]]
            cells += [f"{h['requests']:,}", f"{h['rps']:.0f}", f"{h['share']:.0%}"]
            cells += [f"{h['p50_ms']:.1f} / {h['p99_ms']:.1f}", h["shed"], f"{h['client_cores']:.2f}", h["statuses"]]
            cells += [h["wrong"], h["alive_after"]]
            print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
