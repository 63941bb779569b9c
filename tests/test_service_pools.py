"""Named pools in one service (issue 34): `llmr serve --pool NAME=PATH` (repeatable; a bare PATH is the
default pool) and "pool" in request bodies; each pool with its own --index-dir and additions journal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import llmr

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from llmr.serving.service import Limits, background_server, create_app  # noqa: E402

TOKEN = "s3cret"
AUTH = {"authorization": f"Bearer {TOKEN}"}
REVIEWS = ["a warm and funny film", "tedious and far too long", "a boring film with wooden acting"]
NEWS = ["Stocks rallied as the bank held rates", "The striker scored twice in the final", "A new chip for phones"]


def items(texts: list[str], prefix: str) -> list[dict]:
    return [{"id": f"{prefix}{i}", "contents": f"{t}\nx", "task_name": prefix} for i, t in enumerate(texts)]


@pytest.fixture(scope="module")
def pools() -> dict[str, llmr.Selector]:
    return {
        "reviews": llmr.Selector.load("all-minilm-l6-v2", items(REVIEWS, "r")),
        "news": llmr.Selector.load("all-minilm-l6-v2", items(NEWS, "n")),
    }


def ids(reply: httpx.Response) -> list[str]:
    assert reply.status_code == 200, reply.text
    return [e["id"] for e in reply.json()["results"][0]]


def test_each_pool_selects_from_its_own_items_and_requests_without_one_get_the_first(
    pools: dict[str, llmr.Selector],
) -> None:
    query = {"query": "a boring film", "k": 2}
    with background_server(create_app(pools)) as url, httpx.Client(base_url=url) as client:
        reviews = ids(client.post("/v1/select", json={**query, "pool": "reviews"}))
        assert reviews == [e.passage.id for e in pools["reviews"].select("a boring film", k=2)] and reviews[0] == "r2"
        news = ids(client.post("/v1/select", json={**query, "pool": "news"}))
        assert news == [e.passage.id for e in pools["news"].select("a boring film", k=2)] and news[0][0] == "n"
        assert ids(client.post("/v1/select", json=query)) == reviews  # an old request: the default pool
        prompt = client.post("/v1/prompt", json={**query, "pool": "news"}).json()
        assert all(e["id"].startswith("n") for e in prompt["examples"][0])
        assert client.get("/healthz").json() == {"status": "ok", "pool_size": 3, "pools": {"reviews": 3, "news": 3}}
        assert client.get("/v1/info", params={"pool": "news"}).json()["tasks"] == {"n": 3}
        assert client.get("/v1/info").json()["pools"] == ["reviews", "news"]
        for reply in (
            client.post("/v1/select", json={**query, "pool": "sports"}),
            client.post("/v1/prompt", json={**query, "pool": "sports"}),
            client.get("/v1/info", params={"pool": "sports"}),
        ):
            assert reply.status_code == 422 and reply.json() == {
                "detail": "unknown pool 'sports'; this service has reviews, news"
            }
        assert client.post("/v1/select", json={**query, "pool": "news", "task": "r"}).status_code == 422


def test_additions_go_to_their_pool_and_survive_a_restart_in_its_own_folder(tmp_path: Path) -> None:
    from llmr.cli.serve import open_pools

    for name, texts in (("reviews", REVIEWS), ("news", NEWS)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items(texts, name[0])))
    files = {"default": tmp_path / "reviews.jsonl", "news": tmp_path / "news.jsonl"}
    folders = {"default": tmp_path / "index", "news": tmp_path / "news-index"}
    one = {"pool": "news", "passages": [{"id": "w1", "query": "The senate passed the budget bill", "answer": "x"}]}
    limits = Limits(allow_additions=True)
    with background_server(create_app(open_pools("all-minilm-l6-v2", files, folders), limits, TOKEN)) as url:
        assert httpx.post(f"{url}/v1/passages", json=one, headers=AUTH).json() == {"added": 1, "pool_size": 4}
        unknown = httpx.post(f"{url}/v1/passages", json={**one, "pool": "sports"}, headers=AUTH)
        assert unknown.status_code == 422 and "this service has default, news" in unknown.text
    assert (folders["news"] / "added.jsonl").exists() and not (folders["default"] / "added.jsonl").exists()
    with background_server(create_app(open_pools("all-minilm-l6-v2", {}, folders), limits, TOKEN)) as url:
        assert httpx.get(f"{url}/healthz").json()["pools"] == {"default": 3, "news": 4}
        query = {"query": "the senate passed the budget", "k": 1}
        assert ids(httpx.post(f"{url}/v1/select", json={**query, "pool": "news"})) == ["w1"]
        assert ids(httpx.post(f"{url}/v1/select", json=query))[0].startswith("r")


# -- the command line ----------------------------------------------------------------------------


def serve(argv: list[str], monkeypatch: pytest.MonkeyPatch, selector: llmr.Selector) -> tuple[list, Any]:
    """`llmr serve ARGV`, with each pool's selector faked (`selector`) and the app kept, not served."""
    from types import SimpleNamespace

    from llmr.cli import main
    from llmr.cli import serve as command
    from llmr.serving import service

    opened: list[tuple] = []
    apps: list[Any] = []
    monkeypatch.setattr(command, "open_selector", lambda *args: opened.append(args[1:3]) or selector)
    monkeypatch.setattr(service, "server", lambda app, *_: apps.append(app) or SimpleNamespace(run=lambda: None))
    monkeypatch.setattr(command, "_log_requests", lambda level: None)
    monkeypatch.setattr(command, "_raise_open_files_limit", lambda: None)
    monkeypatch.setattr(sys, "argv", ["llmr", "serve", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == (0 if apps else 2)
    return opened, apps[0] if apps else None


def test_serve_takes_named_pools_and_the_bare_one_is_the_default(
    pools: dict[str, llmr.Selector], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from starlette.testclient import TestClient

    for name in ("a.jsonl", "b.jsonl", "c=d.jsonl"):
        (tmp_path / name).touch()
    a, b, odd = (str(tmp_path / name) for name in ("a.jsonl", "b.jsonl", "c=d.jsonl"))
    argv = ["--pool", f"news={a}", "--pool", b, "--index-dir", f"news={tmp_path / 'i'}"]
    opened, app = serve(argv, monkeypatch, pools["news"])
    assert opened == [(Path(b), None), (Path(a), tmp_path / "i")]  # the bare one first: the default
    with TestClient(app) as client:
        assert client.get("/healthz").json()["pools"] == {"default": 3, "news": 3}
    opened, _ = serve(["--pool", odd], monkeypatch, pools["news"])  # a path with "=" that exists is a path
    assert opened == [(Path(odd), None)]
    opened, app = serve(["--pool", f"x={a}", "--pool", f"y={b}"], monkeypatch, pools["news"])
    with TestClient(app) as client:
        assert list(client.get("/healthz").json()["pools"]) == ["x", "y"]  # none bare: the first is the default


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--pool", "a=A", "--pool", "a=B"], "Invalid value for --pool: pool 'a' is given twice"),
        (["--pool", "a=A", "--pool", "b=A", "--index-dir", "a=I", "--index-dir", "b=I"], "need folders of their own"),
        (["--pool", "A", "--pool", "b=A", "--index-dir", "I", "--index-dir", "b=I/b"], "need folders of their own"),
        (["--pool", "a=A", "--pool", "b=nowhere.jsonl"], "Invalid value for --pool: pool 'b': nowhere.jsonl does not"),
        (["--pool", "a=A", "--index-dir", "b=I"], "pool 'b': give the pool to serve, or an --index-dir"),
    ],
)
def test_serve_refuses_bad_pools_in_one_line_before_encoding_any(
    argv: list[str],
    says: str,
    pools: dict[str, llmr.Selector],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    (tmp_path / "A").touch()
    monkeypatch.chdir(tmp_path)
    opened, _ = serve(argv, monkeypatch, pools["news"])
    err = capsys.readouterr().err
    assert not opened and err.startswith("llmr: error: ") and err.count("\n") == 1 and says in err, err
