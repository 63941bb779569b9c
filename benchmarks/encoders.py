"""Encoder runtimes side by side: torch fp32, torch bf16 (where the CPU has it), onnx, onnx int8, openvino.

    python benchmarks/encoders.py quality                          # agreement with torch fp32 (any machine load)
    python benchmarks/encoders.py speed                            # latency and throughput (idle cores!)
    python benchmarks/encoders.py quality --reward runs/quality/pipeline/iteration-1/reward-<key>

quality: on 500 real test queries of every task and a pool of 10k real pool items (../shared/data),
each runtime's top 8 (exact search) against torch fp32's top 8 (recall@8), and the cosine of each
query's embedding to fp32's. With --reward, the reward model's logits on real (query, candidate) pairs
of its teacher file: the share of same-query candidate pairs a runtime orders as fp32 does.
speed: one query at a time, encode p50/p99 for short (<= 32 tokens) and long (>= 128 tokens) queries;
pool encoding in texts/s; select (encode + search) p99 at pools of 10k / 100k / 1M (synthetic vectors
beyond the real 10k, HNSW from 100k, as benchmarks/serving.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from serving import percentiles, real_texts

K = 8
RUNTIMES = ["torch", "torch-bf16", "onnx", "onnx-int8", "openvino"]


def encoder(runtime: str, query_max_length: int | None = None):
    """An llmr Encoder; torch-bf16 is the torch one with its weights in bf16."""
    from llmr.base.encoders import Encoder

    if runtime != "torch-bf16":
        return Encoder("all-minilm-l6-v2", 64, runtime, query_max_length)  # type: ignore[arg-type]
    import torch

    enc = Encoder("all-minilm-l6-v2", 64)
    enc.model.to(torch.bfloat16)
    return enc


def runtimes() -> list[str]:
    from llmr.base.encoders import cpu_has_bf16

    return [r for r in RUNTIMES if r != "torch-bf16" or cpu_has_bf16()]


def quality(reward: Path | None, only: list[str] | None, query_max_length: int | None) -> None:
    """Rows per runtime (the first is the reference: torch fp32 unless `only` says otherwise); with
    `query_max_length`, one more row per runtime whose queries are capped at that many tokens."""
    import faiss

    pool, queries = real_texts(10_000)
    docs = [p["contents"] for p in pool]
    base_q = base_top = None
    print(f"| runtime | recall@8 vs {(only or ['torch'])[0]} | query cosine mean / min | pool texts/s |")
    print("|---|---:|---:|---:|")
    for runtime in only or runtimes():
        enc = encoder(runtime)
        start = time.perf_counter()
        vectors = enc.encode_documents(docs)
        rate = len(docs) / (time.perf_counter() - start)
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(vectors)
        caps = [None] + ([query_max_length] if query_max_length and runtime != "torch" else [])
        for cap in caps:
            q = (enc if cap is None else encoder(runtime, cap)).encode_queries(queries)
            top = index.search(q, K)[1]
            if base_q is None:
                base_q, base_top = q, top
            recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(top, base_top, strict=True)])
            cos = (q * base_q).sum(1)
            name = runtime if cap is None else f"{runtime}, queries <= {cap} tokens"
            print(f"| {name} | {recall:.4f} | {cos.mean():.4f} / {cos.min():.4f} | {rate:,.0f} |", flush=True)
    if reward is not None:
        reward_agreement(reward)


def reward_agreement(reward: Path, n_queries: int = 250) -> None:
    """The reward model's order of each query's candidates, per runtime, against torch fp32."""
    from sentence_transformers.cross_encoder import CrossEncoder

    from llmr.base.encoders import encoder_fingerprint
    from llmr.base.runtime import ExportedModel, export_folder
    from llmr.data.directory import DataDir
    from llmr.data.jsonl import read_jsonl
    from llmr.data.schema import CandidateList
    from llmr.training.reward import query_text

    stage = json.loads((reward / "stage.json").read_text())
    data = DataDir(next(reward.parent.parent.glob("data-*")))
    passages = {p.id: p.contents for p in data.passages()}
    teacher = next(reward.parent.glob("teacher-*")) / "teacher.jsonl.gz"
    lists = list(read_jsonl(teacher, CandidateList))
    lists = lists[:: max(1, len(lists) // n_queries)][:n_queries]
    groups = [[(query_text(c), passages[d]) for d in c.doc_ids[:8]] for c in lists]
    pairs = [p for g in groups for p in g]
    print(
        f"\nreward model {reward.name} ({stage['report'].get('train_queries')} training queries): "
        f"{len(pairs)} pairs of {len(groups)} queries"
    )
    base = CrossEncoder(str(reward), device="cpu").predict(pairs, batch_size=64, activation_fn=lambda x: x)
    weights = encoder_fingerprint(str(reward), str(reward))
    print("| runtime | same order as torch fp32 (candidate pairs) | max abs logit diff |")
    print("|---|---:|---:|")
    for runtime in ["onnx", "onnx-int8", "openvino"]:
        model = ExportedModel(export_folder(str(reward), weights, "cross", True), runtime)  # type: ignore[arg-type]
        got = model(pairs, 64)[:, 0]
        same = total = 0
        start = 0
        for g in groups:
            a, b = np.asarray(base[start : start + len(g)]), got[start : start + len(g)]
            for i in range(len(g)):
                for j in range(i + 1, len(g)):
                    if a[i] != a[j]:
                        total += 1
                        same += (a[i] > a[j]) == (b[i] > b[j])
            start += len(g)
        print(f"| {runtime} | {same / total:.4f} | {np.abs(np.asarray(base) - got).max():.4f} |", flush=True)


def speed(sizes: list[int], n: int) -> None:
    from llmr.base.index import VectorIndex

    pool, queries = real_texts(10_000)
    docs = [p["contents"] for p in pool]
    enc0 = encoder("torch")
    tok = enc0.tokenizer
    lengths = [len(tok(q)["input_ids"]) for q in queries]
    short = [q for q, n_ in zip(queries, lengths, strict=True) if n_ <= 32][:n]
    long = [q for q, n_ in zip(queries, lengths, strict=True) if n_ >= 128][:n]
    vectors = enc0.encode_documents(docs)
    rng = np.random.default_rng(0)
    indexes = {}
    for size in sizes:
        extra = vectors[rng.integers(0, len(vectors), max(0, size - len(vectors)))]
        extra = extra + rng.normal(0, 0.02, extra.shape).astype(np.float32)
        allv = np.concatenate([vectors, extra])[:size]
        allv /= np.linalg.norm(allv, axis=1, keepdims=True)
        index = VectorIndex(allv.shape[1], "flat" if size <= 10_000 else "hnsw")
        index.add(allv)
        indexes[size] = index
    print(f"{len(short)} short / {len(long)} long queries; one at a time\n")
    head = " | ".join(f"select p99 {s // 1000}k (ms)" for s in sizes)
    print(f"| runtime | short p50 / p99 (ms) | long p50 / p99 (ms) | pool texts/s | {head} |")
    print("|---|---:|---:|---:|" + "---:|" * len(sizes))
    for runtime in runtimes():
        enc = encoder(runtime)
        for q in short[:20]:
            enc.encode_queries([q])  # warm-up
        cells = []
        for batch in (short, long):
            ms = []
            for q in batch:
                t = time.perf_counter()
                enc.encode_queries([q])
                ms.append(1000 * (time.perf_counter() - t))
            cells.append("{:.1f} / {:.1f}".format(*percentiles(ms)))
        start = time.perf_counter()
        enc.encode_documents(docs[:2000])
        rate = 2000 / (time.perf_counter() - start)
        selects = []
        for size in sizes:
            ms = []
            for q in (short + long)[:n]:
                t = time.perf_counter()
                indexes[size].search(enc.encode_queries([q]), K)
                ms.append(1000 * (time.perf_counter() - t))
            selects.append(f"{percentiles(ms)[1]:.1f}")
        print(f"| {runtime} | {cells[0]} | {cells[1]} | {rate:,.0f} | {' | '.join(selects)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["quality", "speed"])
    parser.add_argument("--reward", type=Path, help="a reward-model stage folder of a pipeline run")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--runtimes", help="quality: only these, comma-separated (the first is the reference)")
    parser.add_argument("--query-max-length", type=int, help="quality: also cap the queries' tokens")
    args = parser.parse_args()
    if args.section == "quality":
        only = args.runtimes.split(",") if args.runtimes else None
        quality(args.reward, only, args.query_max_length)
    else:
        speed([int(s) for s in args.sizes.split(",")], args.queries)


if __name__ == "__main__":
    main()
