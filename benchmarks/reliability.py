"""Reliability under attack and accident (issues 17, 33): HTTP abuse, bad data and configs, and kills.

    python benchmarks/reliability.py http            # abuse cases against `llmr serve`, then 200 clients
    python benchmarks/reliability.py fuzz            # bad data files and configs: exit 2 and one line each
    python benchmarks/reliability.py kills --n 20    # SIGKILL scoring / training / eval while they work, resume

Everything runs on loopback with tiny data (the package's sample tasks) and writes one JSON per section
under --out (default runs/reliability). HTTP: the server is `llmr serve` in its own process; its peak
RSS (VmHWM) is read from /proc after the attacks.

Kills: per stage a clean run is watched (when it begins its work, when each checkpoint is written), then
each of n runs is killed at a drawn moment of its work, [10%, 80%] of the clean run's working time after
it begins (train: every other kill aims at a checkpoint being written, with a checkpoint every step). A
kill counts as landed only when the process was alive right before the SIGKILL and died of it (rc -9); a
kill that misses is drawn again (up to 3 attempts) and reported. The resumed run's files are compared
with the clean run's byte for byte, file by file; a few that differ by design are listed as not compared.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
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
    """Each case: a command on a broken input; it must exit 2 with exactly one line on stderr that names the
    file (and line and field where there is one), and write no output (`_check`)."""
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
    failed = [c["case"] for c in cases if not c["passed"]]
    return {"passed": len(cases) - len(failed), "total": len(cases), "failed": failed, "cases": cases}


INPUTS = {"passages.jsonl", "passages.jsonl.gz", "train.jsonl", "bm25_train.jsonl", "cache.sqlite"}  # the broken files
FUZZ_ENV = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "COLUMNS": "80"}  # a common terminal's width


def _check(name: str, cmd: list[str], needle: str, output: Path) -> dict:
    """A case passes when the command exits 2 (a usage or data error) with exactly one line on stderr that holds
    `needle`, and writes nothing: no traceback, no wrapped or boxed message."""
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=FUZZ_ENV)
    lines = run.stderr.rstrip("\n").split("\n") if run.stderr.strip() else []
    wrote = output.exists() and any(p.name not in INPUTS for p in output.rglob("*") if p.is_file())
    why = [
        *([f"exit {run.returncode}, not 2"] if run.returncode != 2 else []),
        *([f"{len(lines)} lines on stderr, not 1"] if len(lines) != 1 else []),
        *(["a traceback"] if "Traceback" in run.stderr else []),
        *([f"stderr lacks {needle!r}"] if needle not in run.stderr else []),
        *(["wrote output"] if wrote else []),
    ]
    return {"case": name, "passed": not why, "why": why, "rc": run.returncode, "stderr": run.stderr[-600:]}


# -- kills --------------------------------------------------------------------------------------

POLL_S = 0.02  # how often a run's folder is looked at


@dataclass
class Stage:
    """One command under test, run in its own folder: how to start it, what it shows of its progress, and
    what of its output a resumed run must reproduce byte for byte."""

    name: str
    command: Callable[[Path], list[str]]  # run folder -> argv
    observe: Callable[[Path], set[str]]  # run folder -> events now; "working": past start-up, "done": output
    output: str  # the output file or folder, in the run folder: its every file is compared...
    ignored: dict[str, str] = field(default_factory=dict)  # ...but these (glob patterns) -> why they may differ
    state: Callable[[Path], dict] = lambda run: {}  # what a kill left behind (read once the process is dead)
    during_write: bool = False  # train: every other kill aims at a checkpoint being written
    kept: Callable[[dict], bool] | None = None  # a landed kill's record -> did the resumed run go on from its work?

    @property
    def folder(self) -> str:
        return self.name.replace(" ", "-")

    def compared(self, run: Path) -> list[str]:
        """The output's files, relative to the run folder, less the ignored ones."""
        out = run / self.output
        files = sorted(p for p in out.rglob("*") if p.is_file()) if out.is_dir() else [out]
        names = [str(p.relative_to(run)) for p in files]
        return [n for n in names if not any(fnmatch.fnmatch(n, pattern) for pattern in self.ignored)]


@dataclass
class Profile:
    """A clean run's timeline: when each event was first seen, seconds after the start."""

    total_s: float
    events: dict[str, float]

    @property
    def working_s(self) -> float:
        """How long the clean run worked: from "working" to its output ("done"), or else to its exit."""
        return self.events.get("done", self.total_s) - self.events["working"]


def watch(proc: subprocess.Popen, run: Path, stage: Stage, until: Callable[[dict[str, float]], bool]) -> dict:
    """Poll `run` while `proc` lives, recording when each event is first seen, until `until(events)` holds
    (then True) or the process exits (then False). Returns {"events": ..., "reached": ...}."""
    start, events = time.perf_counter(), {}
    while True:
        alive = proc.poll() is None
        for event in stage.observe(run):
            events.setdefault(event, round(time.perf_counter() - start, 3))
        if until(events):
            return {"events": events, "reached": True}
        if not alive:
            return {"events": events, "reached": False}
        time.sleep(POLL_S)


def profile(stage: Stage, run: Path, env: dict) -> Profile:
    """The clean run, watched: its duration and when it began its work (and wrote each checkpoint)."""
    start = time.perf_counter()
    with open(run.parent / f"{run.name}.log", "wb") as log:
        proc = subprocess.Popen(stage.command(run), env=env, stdout=log, stderr=subprocess.STDOUT)
        seen = watch(proc, run, stage, lambda events: False)
    total = time.perf_counter() - start
    if proc.returncode != 0 or "working" not in seen["events"]:
        raise RuntimeError(f"{stage.name}: the clean run failed (rc {proc.returncode}); see {run}.log")
    return Profile(round(total, 3), seen["events"])


def kill_while_working(
    cmd: list[str], env: dict, run: Path, stage: Stage, moment: Callable[[dict[str, float]], float | None]
) -> dict:
    """Start `cmd`, wait for the moment to kill (`moment(events)`: seconds from now, once the events allow
    it; None: not yet), then SIGKILL. The kill has landed only when the process was alive right before it
    and then died of it (return code -9): a process that already exited is not killed."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    delay: list[float] = []

    def ready(events: dict[str, float]) -> bool:
        if not delay and (d := moment(events)) is not None:
            delay.append(d)
        return bool(delay)

    seen = watch(proc, run, stage, ready)
    at = time.perf_counter() + (delay[0] if delay else 0.0)
    while seen["reached"] and proc.poll() is None and time.perf_counter() < at:
        time.sleep(min(POLL_S, max(0.0, at - time.perf_counter())))
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    landed = alive and proc.returncode == -signal.SIGKILL
    return {
        "waited_s": round(delay[0], 3) if delay else None,
        "alive_before_kill": alive,
        "rc": proc.returncode,
        "landed": landed,
        "events_before_kill": sorted(seen["events"]),
    }


def code_version() -> str:
    """src/'s committed tree and a hash of its uncommitted changes: a resumed run on other code than its clean
    run's (a shared, moving working tree) may differ for that reason alone. (Not the commit: a commit of
    documentation alone is the same code.)"""
    root = Path(__file__).parents[1]

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True).stdout

    diff = hashlib.sha256(git("diff", "HEAD", "--", "src").encode()).hexdigest()[:12]
    return f"{git('rev-parse', 'HEAD:src').strip()[:12]}+{diff}"


def same_files(names: list[str], run: Path, clean: Path) -> dict[str, bool]:
    return {name: (run / name).is_file() and (run / name).read_bytes() == (clean / name).read_bytes() for name in names}


def bench_stage(stage: Stage, work: Path, n: int, rng: random.Random, env: dict, max_attempts: int = 3) -> dict:
    """A clean run (watched, for its timeline), then n kills, each landing while the run works, each
    resumed; the resumed run's outputs must equal the clean run's byte for byte. A kill that misses (the
    process had exited, or never began its work) is drawn again, up to `max_attempts` times."""
    clean_run = work / f"{stage.folder}-clean"
    clean_code = code_version()
    clean = profile(stage, clean_run, env)
    compared = stage.compared(clean_run)
    lo, hi = 0.1 * clean.working_s, 0.8 * clean.working_s
    checkpoints = sorted((e for e in clean.events if e.startswith("checkpoint-") and " " not in e), key=_step)
    writes = [clean.events[f"{c} done"] - clean.events[c] for c in checkpoints if f"{c} done" in clean.events]
    write_s = sorted(writes)[len(writes) // 2] if writes else 0.0
    attempts, kills = 0, []
    for i in range(n):
        for attempt in range(max_attempts):
            attempts += 1
            run = work / f"{stage.folder}-{i}"
            shutil.rmtree(run, ignore_errors=True)
            if stage.during_write and i % 2 and len(checkpoints) > 1:  # aim at a checkpoint being written
                target, wait = rng.choice(checkpoints[1:]), rng.uniform(0.0, 0.8) * write_s
                aim = f"during the write of {target}"
                moment = partial(_when, event=target, wait=wait)
            else:  # [10%, 80%] of the clean run's working time, counted from when this run begins its work
                wait = rng.uniform(lo, hi)
                aim = f"{wait:.2f} s into its work"
                moment = partial(_when, event="working", wait=wait)
            kill = {"kill": i, "attempt": attempt + 1, "aim": aim}
            kill |= kill_while_working(stage.command(run), env, run, stage, moment)
            if kill["landed"]:
                kill["state"] = stage.state(run)
                kill["same_code_as_clean_run"] = code_version() == clean_code
                start = time.perf_counter()
                try:  # a resumed run that hangs is not resumed
                    resumed = subprocess.run(
                        stage.command(run), env=env, capture_output=True, text=True, timeout=600 + 5 * clean.total_s
                    )
                except subprocess.TimeoutExpired as exc:
                    resumed = subprocess.CompletedProcess(exc.cmd, "timeout", str(exc.stdout or ""), "timed out")
                identical = same_files(compared, run, clean_run) if resumed.returncode == 0 else {}
                kill |= {
                    "resume_rc": resumed.returncode,
                    "resumed": resumed.returncode == 0,  # exit 0: it finished from what the kill left
                    "resume_s": round(time.perf_counter() - start, 1),
                    "resume_said": " ".join(resumed.stdout.split())[-300:],
                    "identical": identical,
                    "byte_identical": bool(identical) and all(identical.values()),
                }
                if resumed.returncode != 0:
                    kill["resume_stderr"] = resumed.stderr[-1000:]
            kills.append(kill)
            if kill["landed"]:
                break
    landed = [k for k in kills if k["landed"]]
    result = {
        "n": n,
        "attempts": attempts,
        "landed_while_working": len(landed),
        "resumed": sum(k["resumed"] for k in landed),
        "byte_identical": sum(k["byte_identical"] for k in landed),
        "files_identical": {name: sum(k["identical"].get(name, False) for k in landed) for name in compared},
        "not_compared": stage.ignored,
        "resumed_on_other_code": sum(not k["same_code_as_clean_run"] for k in landed),
        "clean_run_s": clean.total_s,
        "clean_working_s": round(clean.working_s, 3),
        "kill_window_s": [round(lo, 3), round(hi, 3)],
    }
    if stage.kept:
        result["resumed_from_the_killed_runs_work"] = sum(stage.kept(k) for k in landed if k["resumed"])
    if stage.during_write:
        result |= {
            "checkpoints_in_clean_run": len(checkpoints),
            "median_checkpoint_write_s": round(write_s, 3),
            "landed_after_a_checkpoint": sum(bool(k["state"]["complete"]) for k in landed),
            "landed_during_a_write": sum(bool(k["state"]["incomplete"]) for k in landed),
            "met_a_checkpoint": sum(bool(k["state"]["complete"] or k["state"]["incomplete"]) for k in landed),
        }
    return result | {"kills": kills}


def _from_cache(kill: dict) -> bool:
    """score: the resumed run took some, not all, of its pairs from the cache the killed run filled."""
    found = re.search(r"([\d,]+) unique pairs \(([\d,]+) from cache", kill["resume_said"])
    pairs, cached = (int(g.replace(",", "")) for g in found.groups()) if found else (0, 0)
    return 0 < cached < pairs


def _when(events: dict[str, float], event: str, wait: float) -> float | None:
    return wait if event in events else None


def _step(name: str) -> int:
    return int(name.rpartition("-")[2])


def _events(working: Path, done: Path) -> set[str]:
    return ({"working"} if working.exists() else set()) | ({"done"} if done.exists() else set())


def train_events(checkpoints: Path) -> set[str]:
    """ "working" once a first checkpoint folder appears; each checkpoint-N, and "checkpoint-N done" once the
    trainer wrote its trainer_state.json (its last file)."""
    events = set()
    try:
        for folder in checkpoints.glob("checkpoint-*"):
            events |= {"working", folder.name} | (
                {f"{folder.name} done"} if (folder / TRAINER_STATE).exists() else set()
            )
    except OSError:  # a folder removed while listed (the trainer keeps one checkpoint)
        pass
    return events


def train_state(checkpoints: Path) -> dict:
    folders = sorted(checkpoints.glob("checkpoint-*"), key=lambda p: _step(p.name))
    return {
        "complete": [p.name for p in folders if (p / TRAINER_STATE).exists()],
        "incomplete": [p.name for p in folders if not (p / TRAINER_STATE).exists()],
    }


TRAINER_STATE = "trainer_state.json"  # what the trainer writes last into a checkpoint


def kill_stages(data: Path, work: Path, save_steps: int) -> list[Stage]:
    """score, train retriever and eval on the sample tasks (~36 queries), each as a `Stage`."""
    return [
        Stage(
            "score",
            lambda run: [
                *LLMR,
                "score",
                "--data",
                str(data),
                "--candidates",
                str(work / "cands.jsonl.gz"),
                "--out",
                str(run / "scores.jsonl.gz"),
                "--cache",
                str(run / "cache.sqlite"),
                "--n-candidates",
                "4",
                "--chunk-pairs",
                "4",
                "--no-penalize-other-task",  # every pair goes to the LLM: 144 pairs in 36 chunks
                "--no-penalize-label-mismatch",
            ],
            lambda run: _events(run / "cache.sqlite", run / "scores.jsonl.gz"),  # opened before the LLM loads
            "scores.jsonl.gz",
            kept=_from_cache,
        ),
        Stage(
            "train retriever",
            lambda run: [
                *LLMR,
                "train",
                "retriever",
                "--data",
                str(data),
                "--scores",
                str(work / "scores.jsonl.gz"),
                "--out",
                str(run / "retriever"),
                "--epochs",
                "2",
                "--batch-size",
                "4",
                "--no-bf16",
                "--groups-top-k-positive",
                "1",  # the sample tasks have few unpenalized candidates per query
                "--save-steps",
                str(save_steps),
            ],
            lambda run: (
                train_events(run / "retriever" / "checkpoints") | _events(run, run / "retriever" / "config.json")
            ),
            "retriever",
            {
                "retriever/manifest.json": "when and how long",
                "retriever/training_log.json": "the trainer's runtime and speed",
                "retriever/README.md": "the model card (dates, timings)",
            },
            lambda run: train_state(run / "retriever" / "checkpoints"),
            during_write=True,
            kept=lambda kill: bool(kill["state"]["complete"]),
        ),
        Stage(
            "eval",
            lambda run: [
                *LLMR,
                "eval",
                "--data",
                str(data),
                "--methods",
                "bm25,random",
                "--out",
                str(run / "eval"),
                "--max-per-task",
                "4",
            ],
            lambda run: _events(run / "eval" / "cache.sqlite", run / "eval" / "results.json"),  # before the LLM loads
            "eval",
            {
                "eval/manifest.json": "when and how long",
                "eval/cache.sqlite*": "SQLite's page layout",
                "eval/index/*": "the selectors' index cache, not a result",
            },
        ),
    ]


def bench_kills(
    data: Path, work: Path, n: int, seed: int, stages: list[str], save_steps: int, report: Path | None = None
) -> dict:
    """Per stage: a clean run, then n runs each SIGKILLed while working and resumed; each resumed run's
    outputs must equal the clean run's byte for byte (model weights included). The results so far go to
    `report` after each stage."""
    rng = random.Random(seed)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    work.mkdir(parents=True, exist_ok=True)
    if {"score", "train retriever"} & set(stages):
        subprocess.run(
            [*LLMR, "candidates", "--data", str(data), "--out", str(work / "cands.jsonl.gz")],
            check=True,
            env=env,
            capture_output=True,
        )
    by_name = {stage.name: stage for stage in kill_stages(data, work, save_steps)}
    results = {}
    for name in stages:  # in the order asked
        stage = by_name[name]
        if name == "train retriever" and not (work / "scores.jsonl.gz").exists():  # its input: clean scores
            subprocess.run(by_name["score"].command(work), check=True, env=env, capture_output=True)
        results[name] = bench_stage(stage, work, n, rng, env)
        summary = {k: v for k, v in results[name].items() if k not in ("kills", "not_compared")}
        print(f"{name}: {json.dumps(summary)}", file=sys.stderr, flush=True)
        if report:
            report.write_text(json.dumps(results, indent=1))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("section", choices=["http", "fuzz", "kills"])
    parser.add_argument("--out", type=Path, default=Path("runs/reliability"))
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", default="score,train retriever,eval", help="kills: the stages, comma-separated")
    parser.add_argument("--save-steps", type=int, default=1, help="kills: the trainer's steps between checkpoints")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (under --out) to inspect")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out / "work" if args.keep else Path(tmp)
        shutil.rmtree(work, ignore_errors=True)
        data = sample_data(work / "data")
        if args.section == "http":
            result = bench_http(data, args.clients, args.requests)
        elif args.section == "fuzz":
            result = bench_fuzz(data, work / "fuzz")
        else:
            stages = [s.strip() for s in args.stages.split(",") if s.strip()]
            report = args.out / "kills.json"
            result = bench_kills(data, work / "kills", args.n, args.seed, stages, args.save_steps, report)
    (args.out / f"{args.section}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
