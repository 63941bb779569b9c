"""Reliability under attack and accident (issue 17): HTTP abuse, bad data and configs, and kills.

    python benchmarks/reliability.py http            # abuse cases against `llmr serve`, then 200 clients
    python benchmarks/reliability.py fuzz            # bad data files and configs: one clear line each
    python benchmarks/reliability.py kills --n 20    # SIGKILL scoring / training / eval, resume, compare

Everything runs on loopback with tiny data (the package's sample tasks) and writes one JSON per section
under --out (default runs/reliability). HTTP: the server is `llmr serve` in its own process; its peak
RSS (VmHWM) is read from /proc after the attacks.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SAMPLES = Path(__file__).parents[1] / "src" / "llmr" / "data" / "samples"
LLMR = [sys.executable, "-m", "llmr.cli"]


def sample_data(out: Path) -> Path:
    """The package's sample tasks as a data folder (passages, train, test)."""
    subprocess.run(
        [*LLMR, "data", "build", "--source", str(SAMPLES), "--tasks", "all-available", "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- HTTP abuse ---------------------------------------------------------------------------------


def bench_http(data: Path, clients: int, requests: int) -> dict:
    import httpx

    sys.path.insert(0, str(Path(__file__).parent))
    from serving import load, wait_until_up  # the serving benchmark's load generator

    port, token = free_port(), "reliability-token"
    url = f"http://127.0.0.1:{port}"
    cmd = [*LLMR, "serve", "--pool", str(data), "--port", str(port), "--allow-additions", "--log-level", "warning"]
    server = subprocess.Popen(cmd, env={**os.environ, "LLMR_TOKEN": token, "TOKENIZERS_PARALLELISM": "false"})
    auth = {"authorization": f"Bearer {token}"}
    cases: list[dict] = []

    def case(name: str, attack: Callable[[], object], expect: Callable[[object], bool]) -> None:
        start = time.perf_counter()
        try:
            got = attack()
            ok = expect(got)
            detail = got if isinstance(got, (int, str, list)) else None
        except Exception as exc:  # the attack itself failing (a reset connection) is a result too
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        alive = httpx.get(f"{url}/healthz", timeout=30).status_code == 200
        cases.append(
            {
                "case": name,
                "refused_as_expected": ok,
                "alive_after": alive,
                "detail": detail,
                "seconds": round(time.perf_counter() - start, 2),
            }
        )

    def post(path: str, body: object, headers: dict | None = None, **kw) -> int:
        content = json.dumps(body).encode() if isinstance(body, dict) else body
        h = {"content-type": "application/json", **(headers or {})}
        return httpx.post(f"{url}{path}", content=content, headers=h, timeout=60, **kw).status_code

    try:
        wait_until_up(server, url)
        big = {"passages": [{"contents": "x" * 1_900_000}]}
        case(
            "20 additions of 1.9 MB passages",
            lambda: [post("/v1/passages", big, auth) for _ in range(20)],
            lambda s: set(s) == {413},
        )
        case("256 queries x k 64", lambda: post("/v1/select", {"queries": ["q"] * 256, "k": 64}), lambda s: s == 413)

        def chunked() -> int:
            def body():
                for _ in range(50):
                    yield b" " * 1_000_000

            return post("/v1/select", body())  # type: ignore[arg-type]

        case("50 MB chunked body", chunked, lambda s: s == 413)

        def claims_10gb() -> str:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"POST /v1/select HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000000\r\n\r\n{}")
                return sock.recv(200).split(b"\r\n")[0].decode()

        case("Content-Length 10 GB", claims_10gb, lambda line: " 413" in line)
        case("lone surrogate", lambda: post("/v1/select", b'{"query": "\\ud800"}'), lambda s: s == 422)
        case('k: "5"', lambda: post("/v1/select", {"query": "a", "k": "5"}), lambda s: s == 422)
        case("k: true", lambda: post("/v1/select", {"query": "a", "k": True}), lambda s: s == 422)
        case('queries: [""]', lambda: post("/v1/select", {"queries": [""]}), lambda s: s == 422)
        case(
            "additions without the token",
            lambda: post("/v1/passages", {"passages": [{"contents": "a\nb"}]}),
            lambda s: s == 401,
        )

        def stalled_body() -> str:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(b"POST /v1/select HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{")
                return sock.recv(200).split(b"\r\n")[0].decode()

        case("stalled body", stalled_body, lambda line: " 408" in line)

        def half_open(n: int = 2000) -> list:
            socks = []
            for _ in range(n):
                try:
                    socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                except OSError:
                    break
            healthz = httpx.get(f"{url}/healthz", timeout=30).status_code  # answered while they hang
            time.sleep(11)  # past the 10 s head timeout
            closed = 0
            for s in socks:
                s.settimeout(0.01)
                try:
                    closed += s.recv(1) == b""
                except TimeoutError:
                    pass  # still open
                except OSError:
                    closed += 1  # reset by the server
                s.close()
            return [len(socks), healthz, closed]

        case("2,000 half-open connections", half_open, lambda r: r[1] == 200 and r[2] == r[0])
        rss = peak_rss_mb(server.pid)
        queries = ["a great film", "stocks fell", "the striker scored", "a dull movie"]
        load_result = asyncio.run(load(url, queries, requests, clients))
        load_result["alive_after"] = httpx.get(f"{url}/healthz").status_code == 200
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return {"cases": cases, "peak_rss_mb_after_attacks": rss, "load": {"clients": clients, **load_result}}


# -- bad data and configs -----------------------------------------------------------------------


def bench_fuzz(data: Path, work: Path) -> dict:
    """Each case: a command on a broken input; it must exit non-zero with one line that names the
    file (and line and field where there is one), no traceback, and write no output."""
    import gzip

    item = '{"id": "p0", "contents": "Review: good\\nPositive", "task_name": "sst2"}'
    many = "".join(item.replace('"p0"', f'"p{i}"') + "\n" for i in range(5000))
    rec = '{{"query_id": "{i}", "query": "q", "answers": ["{a}"], "options": {o}, "task_name": "{t}"}}'
    files: dict[str, tuple[str, bytes, str]] = {  # name -> (file, content, what the message must hold)
        "copa answer D with 2 options": (
            "train.jsonl",
            rec.format(i=1, a="D", o='["x", "y"]', t="copa").encode(),
            ":1: field 'answers'",
        ),
        "empty options": ("train.jsonl", rec.format(i=1, a="A", o="[]", t="copa").encode(), "field 'options'"),
        "unknown task": ("train.jsonl", rec.format(i=1, a="x", o='[""]', t="mystery").encode(), "unknown task"),
        "duplicate passage ids": ("passages.jsonl", (item + "\n" + item).encode(), ":2: field 'id'"),
        "empty query": (
            "train.jsonl",
            rec.format(i=1, a="Positive", o='[""]', t="sst2").replace('"q"', '" "').encode(),
            "field 'query'",
        ),
        "5 MB line": (
            "passages.jsonl",
            ('{"id": "p0", "contents": "' + "x" * 5_000_000 + '", "task_name": "sst2"}').encode(),
            "<line>",
        ),
        "non-UTF-8 byte": ("passages.jsonl", item.encode().replace(b"good", b"g\xf6od"), "not UTF-8"),
        "not gzip": ("passages.jsonl.gz", item.encode(), "not a valid gzip file"),
        "truncated gzip": ("passages.jsonl.gz", gzip.compress(many.encode())[:-200], "ends early"),
        "no candidates": (
            "bm25_train.jsonl",
            b'{"query_id": "1", "query": "q", "answers": ["Positive"], "task_name": "sst2",'
            b' "doc_ids": [], "doc_scores": []}',
            "doc_ids",
        ),
        "not JSON": ("train.jsonl", b'{"query_id": 1,', "not valid JSON"),
    }
    cases = []
    for name, (file, content, needle) in files.items():
        folder = work / name.replace(" ", "_")
        folder.mkdir(parents=True)
        if not file.startswith("passages"):
            (folder / "passages.jsonl").write_text(item + "\n")
        (folder / file).write_bytes(content + (b"\n" if not file.endswith(".gz") else b""))
        cases.append(_check(name, [*LLMR, "data", "inspect", str(folder)], needle, folder))
    configs = {
        "n_candidates -5": "scoring.n_candidates=-5",
        "chunk_pairs 0": "scoring.chunk_pairs=0",
        "epochs -1": "reward.epochs=-1",
        "batch_size 0": "retriever.batch_size=0",
        "temperature 0": "retriever.temperature=0",
        "broken YAML in --set": "scoring=[1,2",
    }
    for name, override in configs.items():
        out = work / f"cfg-{len(cases)}"
        cmd = [*LLMR, "pipeline", "-o", str(out), "--set", override]
        cases.append(_check(name, cmd, override.split("=")[0], out))
    out = work / "eval-out"
    out.mkdir()
    broken = out / "cache.sqlite"  # the outcome cache `llmr eval` keeps in its output folder
    broken.write_bytes(b"not a database" * 100)
    cmd = [*LLMR, "eval", "--data", str(data), "--methods", "zero", "--out", str(out), "--max-per-task", "1"]
    cases.append(_check("corrupt SQLite cache", cmd, str(broken), out))
    return {"cases": cases, "clear": sum(c["clear"] for c in cases), "total": len(cases)}


def _check(name: str, cmd: list[str], needle: str, output: Path) -> dict:
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    text = " ".join(run.stderr.split())  # the CLI's error box wraps lines; one message either way
    wrote = output.exists() and any(p.name not in INPUTS for p in output.rglob("*") if p.is_file())
    clear = run.returncode != 0 and "Traceback" not in run.stderr and needle in text and not wrote
    return {"case": name, "clear": clear, "rc": run.returncode, "message": text[-300:]}


INPUTS = {"passages.jsonl", "passages.jsonl.gz", "train.jsonl", "bm25_train.jsonl", "cache.sqlite"}  # the broken files


# -- kills --------------------------------------------------------------------------------------


def digest(path: Path) -> str:
    """The output's content: a file's bytes, or a folder's files by relative path, less what differs between
    runs by design (timings, dates, the model card, database page layout)."""
    skip = {"manifest.json", "stage.json", "training_log.json", "timings.json", "README.md"}
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        if f.name in skip or f.suffix in (".png", ".sqlite", ".faiss") or f.name.endswith(("-wal", "-shm")):
            continue
        h.update((str(f.relative_to(path)) if path.is_dir() else "").encode() + f.read_bytes())
    return h.hexdigest()


def bench_kills(data: Path, work: Path, n: int, seed: int) -> dict:
    """Each stage: a clean run, then n runs each SIGKILLed at a random moment and resumed; the resumed
    output must equal the clean one byte for byte (model weights included)."""
    rng = random.Random(seed)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    stages = {
        "score": lambda out, cache: [
            *LLMR,
            "score",
            "--data",
            str(data),
            "--candidates",
            str(work / "cands.jsonl.gz"),
            "--out",
            str(out),
            "--cache",
            str(cache),
            "--n-candidates",
            "4",
            "--chunk-pairs",
            "4",
        ],
        "train retriever": lambda out, cache: [
            *LLMR,
            "train",
            "retriever",
            "--data",
            str(data),
            "--scores",
            str(work / "scores.jsonl.gz"),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--no-bf16",
            "--groups-top-k-positive",
            "1",  # the sample tasks have few unpenalized candidates per query
        ],
        "eval": lambda out, cache: [
            *LLMR,
            "eval",
            "--data",
            str(data),
            "--methods",
            "bm25,random",
            "--out",
            str(out),
            "--max-per-task",
            "4",
        ],
    }
    subprocess.run(
        [*LLMR, "candidates", "--data", str(data), "--out", str(work / "cands.jsonl.gz")], check=True, env=env
    )
    subprocess.run(stages["score"](work / "scores.jsonl.gz", work / "scores.sqlite"), check=True, env=env)
    results = {}
    for name, make in stages.items():
        suffix = ".jsonl.gz" if name == "score" else ""  # scoring writes a file, the others a folder
        clean_out = work / f"{name}-clean{suffix}"
        start = time.perf_counter()
        subprocess.run(make(clean_out, work / f"{name}-clean.sqlite"), check=True, env=env, capture_output=True)
        seconds = time.perf_counter() - start
        clean = digest(clean_out)
        survived = []
        for i in range(n):
            out, cache = work / f"{name}-{i}{suffix}", work / f"{name}-{i}.sqlite"
            proc = subprocess.Popen(make(out, cache), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.2, 1.0) * seconds)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            subprocess.run(make(out, cache), check=True, env=env, capture_output=True)
            survived.append(digest(out) == clean)
        results[name] = {"survived": sum(survived), "n": n, "clean_run_s": round(seconds, 1)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["http", "fuzz", "kills"])
    parser.add_argument("--out", type=Path, default=Path("runs/reliability"))
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = sample_data(work / "data")
        if args.section == "http":
            result = bench_http(data, args.clients, args.requests)
        elif args.section == "fuzz":
            result = bench_fuzz(data, work / "fuzz")
        else:
            result = bench_kills(data, work / "kills", args.n, args.seed)
    (args.out / f"{args.section}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
