"""Scoring throughput: llmr's scorer vs a naive scorer written the way the reference code does it.

Both score the same real (candidate, query) -> answer pairs from ../shared/data with the same model
and dtype. Each scorer runs in its own subprocess so its peak memory (max RSS) is its own.

    python benchmarks/scoring.py --pairs 1000            # prints a markdown table

naive: right padding, logits at every position (the full 262k vocabulary), no length bucketing,
fixed batch of 8 in input order. llmr: `llmr.llm.hf.HFCausalLM.score` (left padding, logits only
for continuation positions, length-sorted batches within a token budget).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

TASKS = "sst2,ag_news,copa,rte,arc_e,natural_questions,common_gen,boolq"


def make_pairs(n: int, seed: int, shared: str) -> list[tuple[str, str]]:
    """Real LLM-R feedback pairs: BM25 candidates of training queries, in the paper's format."""
    from llmr.candidates import BM25Retriever, mine_candidates
    from llmr.data.build import BuildConfig, build
    from llmr.data.directory import DataDir
    from llmr.data.sources import DirectorySource
    from llmr.scoring.feedback import ScoringConfig, make_jobs, unique_pairs
    from llmr.tasks import resolve_tasks

    with tempfile.TemporaryDirectory() as tmp:
        tasks = resolve_tasks(TASKS)
        config = BuildConfig(tasks=tuple(t.name for t in tasks), source=shared, max_train=n // 16 + 1, seed=seed)
        build(DirectorySource(shared), tasks, tmp, config)
        data = DataDir(tmp)
        pool = list(data.passages())
        cands = list(mine_candidates(list(data.records("train")), pool, BM25Retriever(pool), top_n=16, scope="task"))
    jobs = make_jobs(cands, {p.id: p for p in pool}, ScoringConfig(n_candidates=16, seed=seed))
    pairs = list(unique_pairs(jobs).values())
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


@torch.inference_mode()
def naive_score(llm, pairs: list[tuple[str, str]], batch_size: int = 8) -> list[float]:
    """Reference-style: right padding, full logits, fixed batches in input order, masked token loss."""
    tok, model = llm.tokenizer, llm.model
    out = []
    for start in range(0, len(pairs), batch_size):
        batch = pairs[start : start + batch_size]
        seqs, labels = [], []
        for ctx, cont in batch:
            c = llm._prefix + tok(ctx, add_special_tokens=False)["input_ids"]
            a = tok(cont, add_special_tokens=False)["input_ids"]
            seqs.append(c + a)
            labels.append([-100] * len(c) + a)
        width = max(map(len, seqs))
        ids = torch.tensor([s + [llm._pad] * (width - len(s)) for s in seqs])
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
        lab = torch.tensor([lb + [-100] * (width - len(lb)) for lb in labels])
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
        lp = torch.log_softmax(logits[:, :-1], -1)
        target = lab[:, 1:]
        tok_lp = lp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (target != -100)
        out.extend((tok_lp.sum(-1) / (target != -100).sum(-1)).tolist())
    return out


def worker(args: argparse.Namespace) -> None:
    """One scorer on the pairs file; prints a JSON line of measurements."""
    from llmr.llm.hf import HFCausalLM

    pairs = [tuple(p) for p in json.loads(Path(args.pairs_file).read_text())]
    llm = HFCausalLM(args.model, dtype=args.dtype)
    tokens = sum(llm.count_tokens([c + a for c, a in pairs]))
    warm = pairs[:8]
    if args.worker == "naive":
        naive_score(llm, warm)
        start = time.perf_counter()
        means = naive_score(llm, pairs)
    else:
        llm.score([c for c, _ in warm], [a for _, a in warm])
        start = time.perf_counter()
        means = [s.mean for s in llm.score([c for c, _ in pairs], [a for _, a in pairs])]
    elapsed = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "scorer": args.worker,
                "seconds": elapsed,
                "pairs": len(pairs),
                "tokens": tokens,
                "peak_mb": peak_mb,
                "means": means,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=2000, help="Number of (context, answer) pairs.")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--dtype", default="bf16", help="Same dtype for both scorers.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared/data/llmr-tasks"))
    parser.add_argument("--worker", choices=["naive", "llmr"], help=argparse.SUPPRESS)
    parser.add_argument("--pairs-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    pairs = make_pairs(args.pairs, args.seed, args.shared)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(pairs, fh)
    results = {}
    for name in ("naive", "llmr"):
        cmd = [
            sys.executable,
            __file__,
            "--worker",
            name,
            "--pairs-file",
            fh.name,
            "--model",
            args.model,
            "--dtype",
            args.dtype,
        ]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results[name] = json.loads(line)
    naive, ours = results["naive"], results["llmr"]
    diff = max(abs(a - b) for a, b in zip(naive["means"], ours["means"], strict=True))
    print(
        f"\n{len(pairs)} pairs, {ours['tokens']:,} tokens, {args.model}, {args.dtype}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print("| scorer | pairs/s | tokens/s | peak RSS (MB) | seconds |")
    print("|---|---:|---:|---:|---:|")
    for r in (naive, ours):
        print(
            f"| {r['scorer']} | {r['pairs'] / r['seconds']:.1f} | {r['tokens'] / r['seconds']:,.0f} | "
            f"{r['peak_mb']:,.0f} | {r['seconds']:.1f} |"
        )
    print(
        f"| **llmr / naive** | **{naive['seconds'] / ours['seconds']:.2f}x** | | "
        f"{ours['peak_mb'] / naive['peak_mb']:.2f}x | |"
    )
    print(f"\nmax |mean log-prob difference| between the scorers: {diff:.4f} nats/token")


if __name__ == "__main__":
    main()
