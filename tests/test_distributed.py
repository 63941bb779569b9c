"""Scaling out: the Ray engine gives a single-process run's output (killed actors included)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fakes import FakeLLM
from llmr.data.directory import DataDir
from llmr.data.schema import CandidateList, Passage, Record
from llmr.distributed.engine import LocalEngine, as_engine
from llmr.evaluation import EvalSettings, OutcomeCache, evaluate
from llmr.evaluation.selectors import make_selector
from llmr.scoring.cache import ScoreCache
from llmr.scoring.feedback import ScoringConfig, cache_namespace, collect, make_jobs, run_scoring

TESTS = Path(__file__).parent

# 12 SST-2-like queries, each with the other 11 as candidates: 132 pairs to score.
POOL = {
    f"p{i}": Passage(id=f"p{i}", contents=f"Review: film {i}\n{'Positive' if i % 2 else 'Negative'}", task_name="sst2")
    for i in range(12)
}
CANDIDATES = [
    CandidateList(
        query_id=f"q{i}",
        query=f"Review: movie {i}",
        answers=["Positive" if i % 2 else "Negative"],
        task_name="sst2",
        doc_ids=[d for d in POOL if d != f"p{i}"],
        doc_scores=[0.0] * 11,
    )
    for i in range(12)
]
CONFIG = ScoringConfig(n_candidates=11, penalize_label_mismatch=False, chunk_pairs=4)


def _llmr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "llmr.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_local_engine_runs_items_in_order_on_the_llm() -> None:
    llm = FakeLLM()
    engine = as_engine(llm)
    assert isinstance(engine, LocalEngine) and as_engine(engine) is engine
    assert engine.fingerprint == llm.fingerprint
    assert list(engine.map(lambda m, x: (m is llm, x * 2), [1, 2, 3])) == [
        (0, (True, 2)),
        (1, (True, 4)),
        (2, (True, 6)),
    ]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    # Workers import the test helpers (FakeLLM) from here.
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _local_scores(tmp_path: Path) -> list[CandidateList]:
    jobs = make_jobs(CANDIDATES, POOL, CONFIG)
    cache = ScoreCache(tmp_path / "local.sqlite")
    run_scoring(jobs, FakeLLM(), cache, CONFIG)
    return list(collect(jobs, cache_namespace(FakeLLM.fingerprint, CONFIG), cache))


@pytest.mark.slow
def test_ray_scoring_equals_local_and_survives_a_killed_actor(ray_cluster: str, tmp_path: Path) -> None:
    from llmr.distributed.engine import RayEngine

    jobs = make_jobs(CANDIDATES, POOL, CONFIG)
    cache = ScoreCache(tmp_path / "ray.sqlite")
    killed: list[int] = []
    with RayEngine(FakeLLM, workers=2) as engine:
        import ray

        pids = ray.get([a.pid.remote() for a in engine.actors])

        def kill_one_worker(n_pairs: int, n_tokens: int) -> None:
            if not killed:  # SIGKILL a worker process mid-run: Ray restarts it and retries its tasks
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        stats = run_scoring(jobs, engine, cache, CONFIG, on_chunk=kill_one_worker)
        assert killed and ray.get(engine.actors[0].pid.remote()) != pids[0]  # a new incarnation
    assert stats == {"pairs": 132, "cached": 0, "scored": 132}
    assert list(collect(jobs, cache_namespace(FakeLLM.fingerprint, CONFIG), cache)) == _local_scores(tmp_path)


@pytest.mark.slow
def test_a_killed_ray_driver_resumes_from_the_cache(ray_cluster: str, tmp_path: Path) -> None:
    from llmr.distributed.engine import RayEngine

    jobs = make_jobs(CANDIDATES, POOL, CONFIG)
    cache = ScoreCache(tmp_path / "ray.sqlite")
    done: list[int] = []

    def driver_dies(n_pairs: int, n_tokens: int) -> None:
        done.append(n_pairs)
        if len(done) == 5:
            raise KeyboardInterrupt

    with RayEngine(FakeLLM, workers=2) as engine:
        with pytest.raises(KeyboardInterrupt):
            run_scoring(jobs, engine, cache, CONFIG, on_chunk=driver_dies)
        assert cache.count() == 5 * 4  # five committed chunks
        stats = run_scoring(jobs, engine, cache, CONFIG)
    assert stats == {"pairs": 132, "cached": 20, "scored": 112}
    assert list(collect(jobs, cache_namespace(FakeLLM.fingerprint, CONFIG), cache)) == _local_scores(tmp_path)


@pytest.mark.slow
def test_ray_evaluation_equals_local(ray_cluster: str, tmp_path: Path) -> None:
    from llmr.distributed.engine import RayEngine

    pool = list(POOL.values())
    records = [Record(query_id=c.query_id, query=c.query, answers=c.answers, task_name="sst2") for c in CANDIDATES]
    bm25 = make_selector("bm25", pool)
    settings = EvalSettings(chunk=3)
    local = evaluate(FakeLLM(), bm25, records, 2, OutcomeCache(tmp_path / "local.sqlite"), settings)
    with RayEngine(FakeLLM, workers=2) as engine:
        remote = evaluate(engine, bm25, records, 2, OutcomeCache(tmp_path / "ray.sqlite"), settings)
    assert remote == local and len(remote) == 12


@pytest.mark.slow
def test_score_and_eval_cli_on_a_ray_cluster_write_the_local_output(ray_cluster: str, tmp_path: Path) -> None:
    """The real model: 2 replicas on the test's cluster (--address) give the local run's scores and results."""
    for args in (
        ["data", "build", "--source", "samples", "--out", str(tmp_path / "data"), "--tasks", "sst2,copa"],
        ["candidates", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "cands.jsonl.gz"), "--top-n", "4"],
    ):
        proc = _llmr(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    on_ray = ["--engine", "ray", "--address", ray_cluster, "--workers", "2"]
    score = ["score", "--data", str(tmp_path / "data"), "-c", str(tmp_path / "cands.jsonl.gz")]
    score += ["--n-candidates", "3", "--chunk-pairs", "4", "--no-penalize-label-mismatch"]
    evaluation = ["eval", "--data", str(tmp_path / "data"), "--methods", "zero,bm25", "--k", "2", "--max-per-task", "4"]
    for name, extra in (("local", []), ("ray", on_ray)):
        proc = _llmr(*score, *extra, "-o", str(tmp_path / f"{name}.jsonl"), "--cache", str(tmp_path / f"{name}.sqlite"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        proc = _llmr(*evaluation, *extra, "-o", str(tmp_path / f"eval-{name}"))
        assert proc.returncode == 0, proc.stdout + proc.stderr
    a, b = list(DataDir(tmp_path).candidates("local")), list(DataDir(tmp_path).candidates("ray"))
    assert len(a) == len(b) > 0
    for x, y in zip(a, b, strict=True):
        assert x.doc_ids == y.doc_ids
        assert x.doc_scores == pytest.approx(y.doc_scores, abs=1e-4)  # 1 vs 2 torch threads: float rounding
    results = [json.loads((tmp_path / f"eval-{n}" / "results.json").read_text()) for n in ("local", "ray")]
    assert results[0]["by_k"] == results[1]["by_k"]  # the same predictions, so the same scores and CIs


def _training_data(root: Path) -> None:
    """32 queries (the retriever tests' 8, each in 4 phrasings) and their pool."""
    from llmr.data.jsonl import write_jsonl
    from test_retriever import _data

    cands, pool = _data()
    write_jsonl(
        root / "scores.jsonl",
        [
            c.model_copy(update={"query_id": f"{c.query_id}_{i}", "query": f"{c.query} ({i})"})
            for i in range(4)
            for c in cands
        ],
    )
    write_jsonl(root / "data" / "passages.jsonl", pool.values())


def _train(root: Path, nproc: int, stage: str, *args: str) -> list[dict]:
    out = root / f"{stage}-{nproc}"
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
        if nproc > 1
        else [sys.executable]
    )
    cmd = [*launcher, str(TESTS / "ddp_no_dropout.py"), "train", stage, "-s", str(root / "scores.jsonl")]
    # fp32: under bf16 autocast (on by default on AVX-512 BF16 CPUs) half-batches round differently (CI: 5e-4).
    proc = subprocess.run(
        [*cmd, "--data", str(root / "data"), "-o", str(out), "--epochs", "1", "--no-bf16", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (out / "manifest.json").exists() and not (out / "checkpoints").exists()
    return json.loads((out / "training_log.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stage", "args"),
    [("retriever", ["--batch-size", "8"]), ("reward", ["--batch-size", "4", "--groups-n-negatives", "3"])],
)
def test_two_process_gloo_training_equals_one_process(tmp_path: Path, stage: str, args: list[str]) -> None:
    """torchrun, 2 CPU processes (gloo), half the batch each: the same steps and the same loss as one
    process with the whole batch (the retriever's in-batch negatives are gathered across processes)."""
    _training_data(tmp_path)
    one, two = _train(tmp_path, 1, stage, *args), _train(tmp_path, 2, stage, *args)
    assert one[-1]["step"] == two[-1]["step"] == 32 // int(args[1])  # 32 queries, one epoch
    # Each step's logged loss is the mean over processes (the final train_loss is process 0's alone).
    curve = [[x["loss"] for x in log if "loss" in x] for log in (one, two)]
    assert len(curve[0]) == one[-1]["step"] and curve[1] == pytest.approx(curve[0], rel=1e-4)
    if stage == "retriever":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(tmp_path / "retriever-2"))
        assert model.encode(["Review: fine movie"]).shape == (1, 384)
    else:
        from sentence_transformers.cross_encoder import CrossEncoder

        assert CrossEncoder(str(tmp_path / "reward-2")).predict([("a", "b")]).shape == (1,)
