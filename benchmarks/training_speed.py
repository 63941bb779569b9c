"""What makes distillation over thousands of queries affordable on CPU: the retriever's step time and the
teacher's scoring rate under each setting, side by side in one run (issue 15).

    python benchmarks/training_speed.py runs/quality/pipeline [--steps 6] [--teacher FILE] [--only N]

Reads the pipeline's data and its first teacher file (real queries and pool items) and, for each
setting, trains MiniLM for `--steps` steps of the real retriever training code (`train_retriever`) and
reports the median seconds per step after the first (warm-up); then times the reward model over 512
teacher pairs (fp32; and bf16 where the CPU has it natively). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from statistics import median

import torch
from transformers import TrainerCallback

from llmr.base.encoders import default_dtype
from llmr.data.directory import DataDir
from llmr.data.jsonl import read_jsonl
from llmr.data.schema import CandidateList
from llmr.training.groups import GroupConfig
from llmr.training.retriever import RetrieverConfig, train_retriever


class StepTimes(TrainerCallback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def step_seconds(
    lists: list[CandidateList], passages: dict, config: RetrieverConfig, steps: int, fast: bool = True
) -> float:
    timer = StepTimes()
    subset = lists[: steps * config.batch_size]
    with tempfile.TemporaryDirectory() as out:
        train_retriever(subset, passages, out, config, fast=fast, callbacks=[timer], save_steps=10**6)
    gaps = [b - a for a, b in zip(timer.times, timer.times[1:], strict=False)]
    return median(gaps)


def reward_scores(model_dir: Path, pairs: list[tuple[str, str]], bf16: bool) -> tuple[float, list[float]]:
    """Pairs per second and the logits, as the teacher stage computes them (its saved max length)."""
    from sentence_transformers.cross_encoder import CrossEncoder

    model = CrossEncoder(str(model_dir), model_kwargs={"torch_dtype": torch.bfloat16 if bf16 else torch.float32})
    model.predict(pairs[:64], batch_size=64)  # warm-up
    started = time.perf_counter()
    logits = model.predict(pairs, batch_size=64).tolist()
    return len(pairs) / (time.perf_counter() - started), logits


def same_order(a: list[float], b: list[float], group: int) -> float:
    """Share of candidate pairs within a query that two scorings order the same way."""
    same = total = 0
    for start in range(0, len(a), group):
        x, y = a[start : start + group], b[start : start + group]
        for i in range(len(x)):
            for j in range(i + 1, len(x)):
                same += (x[i] - x[j]) * (y[i] - y[j]) > 0
                total += 1
    return same / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", type=Path, help="a pipeline folder (e.g. runs/quality/pipeline)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--teacher", type=Path, help="teacher.jsonl.gz (default: the pipeline's first)")
    parser.add_argument("--only", type=int, default=0, help="time only the first N retriever settings")
    args = parser.parse_args()
    data = next(args.pipeline.glob("data-*"))
    teacher = args.teacher or next(args.pipeline.glob("iteration-1/teacher-*/teacher.jsonl.gz"))
    passages = {p.id: p for p in DataDir(data).passages()}
    lists = list(read_jsonl(teacher, CandidateList))
    random.Random(0).shuffle(lists)  # the file is grouped by task: steps see the study's mix of lengths
    native_bf16 = default_dtype("cpu") == torch.bfloat16
    dtype = "bf16" if native_bf16 else "fp32"
    base = RetrieverConfig(epochs=1, batch_size=16, max_length=96, bf16=native_bf16)
    before = f"max length 96, {dtype}, before: sdpa, a padded batch per column, dropout 0.1"  # fast=False
    settings = {
        before: replace(base, dropout=None),
        f"max length 96, {dtype}, eager attention, length-sorted chunks, fused AdamW, dropout 0.1": replace(
            base, dropout=None
        ),
        "the same without dropout (the default: the study)": base,
        f"max length 64, {dtype}": replace(base, max_length=64),
        f"max length 128, {dtype}": replace(base, max_length=128),
        f"max length 256, {dtype} (the default)": replace(base, max_length=256),
        f"1 hard negative instead of 3, {dtype}": replace(
            base, groups=GroupConfig(n_negatives=1, drop_same_label_negatives=True)
        ),
        f"batch 32, {dtype}": replace(base, batch_size=32),
    }  # the query-side rows of RESULTS.md came from the retired `retriever.train_side: query`
    if native_bf16:  # without AVX-512 BF16 / AMX, bf16 is emulated (~8x slower): not worth timing
        settings["max length 96, fp32"] = replace(base, bf16=False)
    print("| retriever setting | s / step | queries / s | epoch of 10,000 queries |")
    print("|---|---:|---:|---:|")
    for name, config in list(settings.items())[: args.only or None]:
        s = step_seconds(lists, passages, config, args.steps, fast=name != before)
        rate = config.batch_size / s
        print(f"| {name} | {s:.2f} | {rate:.1f} | {10000 / rate / 60:.1f} min |", flush=True)
    reward = next(args.pipeline.glob("iteration-1/reward-*"))
    pairs = [(c.query, passages[d].contents) for c in lists[:64] for d in c.doc_ids[:8]]
    fp32_rate, fp32 = reward_scores(reward, pairs, False)
    print(f"\n| reward model (teacher scoring of {len(pairs)} pairs, batch 64) | pairs / s |")
    print("|---|---:|")
    print(f"| fp32 (the teacher stage without native bf16) | {fp32_rate:.0f} |")
    if native_bf16:
        bf16_rate, bf16 = reward_scores(reward, pairs, True)
        agree = 100 * same_order(bf16, fp32, 8)
        note = f"orders {agree:.1f}% of candidate pairs as fp32 does"
        print(f"| bf16 (the teacher stage with native bf16) | {bf16_rate:.0f} ({note}) |")


if __name__ == "__main__":
    main()
