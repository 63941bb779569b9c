"""`llmr.Selector` and `llmr serve`: selection rules, the pool, and the real HTTP service on loopback."""

from __future__ import annotations

import asyncio
import shutil
import sys
from typing import Any

import numpy as np
import pytest

import llmr
from llmr.data.schema import Passage
from llmr.evaluation.selectors import balanced, mmr
from llmr.serving.selector import as_passage, read_pool

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

REVIEWS = [
    ("a warm, funny and beautifully acted film", "Positive"),
    ("an absolute joy from start to finish", "Positive"),
    ("one of the best movies of the year", "Positive"),
    ("the plot is a mess and the jokes fall flat", "Negative"),
    ("tedious, predictable and far too long", "Negative"),
    ("a boring film with wooden acting", "Negative"),
    ("a boring film, with wooden acting!", "Negative"),  # a near-copy, for diversity
]
NEWS = [
    ("Stocks rallied as the central bank held interest rates", "Business"),
    ("The striker scored twice in the cup final", "Sports"),
    ("A new chip promises faster phones", "Sci/Tech"),
]


def pool() -> list[dict]:
    items = [{"id": f"sst2-{i}", "query": q, "answer": a, "task_name": "sst2"} for i, (q, a) in enumerate(REVIEWS)]
    items += [{"id": f"news-{i}", "query": q, "answer": a, "task_name": "ag_news"} for i, (q, a) in enumerate(NEWS)]
    return items


@pytest.fixture(scope="module")
def selector() -> llmr.Selector:
    return llmr.Selector.load("all-minilm-l6-v2", pool())


# -- rules on their own ----------------------------------------------------------------------


def test_mmr_without_diversity_is_similarity_order_and_with_it_skips_near_duplicates() -> None:
    vectors = np.array([[1.0, 0.0], [0.999, 0.045], [0.6, 0.8]], dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = np.array([0.95, 0.94, 0.7])
    assert mmr(sims, vectors, 3, 0.0) == [0, 1, 2]
    assert mmr(sims, vectors, 2, 0.5) == [0, 2]  # the near-copy of the first pick loses to a different item


def test_balanced_alternates_labels_in_rank_order() -> None:
    labels = ["Positive", "Positive", "Positive", "Negative", "Negative"]
    assert balanced([0, 1, 2, 3, 4], labels, 4) == [0, 3, 1, 4]
    assert balanced([0, 1], labels, 4) == [0, 1]  # fewer candidates than k


def test_pool_items_are_checked() -> None:
    assert as_passage({"query": "q", "answer": "a"}, "x").contents == "q\na"
    with pytest.raises(ValueError, match="needs `contents`"):
        as_passage({"query": "q"}, "ex-3")
    with pytest.raises(ValueError, match="non-empty"):
        as_passage({"contents": " "}, "ex-3")
    with pytest.raises(FileNotFoundError, match="pool not found"):
        read_pool("no/such/passages.jsonl")


# -- the library --------------------------------------------------------------------------------


def test_select_finds_the_nearest_examples_of_the_task(selector: llmr.Selector) -> None:
    chosen = selector.select("tedious, predictable and much too long", k=3, task="sst2")
    assert [e.passage.task_name for e in chosen] == ["sst2"] * 3
    assert chosen[0].passage.id == "sst2-4"
    assert chosen[0].score >= chosen[1].score >= chosen[2].score
    anywhere = selector.select("the goalkeeper saved a penalty in the final", k=1)
    assert anywhere[0].passage.id == "news-1"  # no task: the whole pool


def test_select_many_matches_select_and_takes_one_task_per_query(selector: llmr.Selector) -> None:
    queries = ["a joyful film", "shares fell on weak earnings"]
    many = selector.select_many(queries, k=2, task=["sst2", "ag_news"])
    assert [[e.passage.id for e in x] for x in many] == [
        [e.passage.id for e in selector.select(q, k=2, task=t)]
        for q, t in zip(queries, ["sst2", "ag_news"], strict=True)
    ]
    with pytest.raises(ValueError, match="unknown task"):
        selector.select("x", task="mnli")
    with pytest.raises(ValueError, match="k must be"):
        selector.select("x", k=0)


def test_an_empty_query_is_an_error_not_examples(selector: llmr.Selector) -> None:
    for query in ("", "  \n"):
        with pytest.raises(ValueError, match="empty query"):
            selector.select(query)
    with pytest.raises(ValueError, match=r"empty query \(query 1\)"):
        selector.select_many(["a film", ""])


def test_k_over_the_pool_warns_once_and_returns_what_there_is(
    selector: llmr.Selector, caplog: pytest.LogCaptureFixture
) -> None:
    fresh = llmr.Selector(selector.encoder, [as_passage(p, "") for p in pool()])  # nothing warned yet
    for _ in range(2):
        assert len(fresh.select("stocks", k=5, task="ag_news")) == len(NEWS)
    assert len(fresh.select("stocks", k=50)) == len(pool())
    notices = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert notices == [
        "k = 5 is over the 3 items of task 'ag_news': at most 3 returned",
        f"k = 50 is over the {len(pool())} items of the pool: at most {len(pool())} returned",
    ]


def test_where_filters_the_pool_before_the_search(selector: llmr.Selector) -> None:
    by_field = selector.select("a boring film", k=2, where={"task_name": "ag_news"})
    assert len(by_field) == 2 and {e.passage.task_name for e in by_field} == {"ag_news"}  # k found, not 0
    positive = selector.select("a boring film", k=3, where=lambda p: p.contents.endswith("Positive"))
    assert len(positive) == 3 and all(e.passage.contents.endswith("Positive") for e in positive)
    assert selector.select("a film", k=2, where={"task_name": "nope"}) == []


def test_metadata_fields_filter_and_each_example_says_its_score_and_rank(selector: llmr.Selector) -> None:
    items = [{**item, "source": "critic" if i % 2 else "user"} for i, item in enumerate(pool())]
    tagged = llmr.Selector(selector.encoder, [as_passage(p, "") for p in items])
    critics = tagged.select("a boring film", k=8, where={"source": "critic"})
    assert critics and {e.passage.source for e in critics} == {"critic"}
    ranked = selector.select("a boring film", k=3, task="sst2")
    assert [e.rank for e in ranked] == [1, 2, 3] and ranked[0].score >= ranked[1].score >= ranked[2].score
    diverse = selector.select("a boring film", k=3, task="sst2", diversity=0.9)
    assert sorted(e.rank for e in diverse) != [1, 2, 3]  # MMR skipped the near-copy: its rank shows why


def test_dedupe_leaves_out_identical_pool_items(selector: llmr.Selector) -> None:
    items = [*pool(), {**pool()[0], "id": "copy"}]
    assert len(llmr.Selector.load("all-minilm-l6-v2", items)) == len(items)
    deduped = llmr.Selector.load("all-minilm-l6-v2", items, dedupe=True)
    assert len(deduped) == len(pool()) and "copy" not in {p.id for p in deduped.passages}


def test_budget_drops_the_least_similar_and_the_prompt_puts_the_most_similar_last(selector: llmr.Selector) -> None:
    full = selector.select("a boring, tedious film", k=4, task="sst2")
    sizes = selector.count_tokens([e.passage.contents + "\n\n" for e in full] + ["a boring, tedious film\n"])
    budget = sum(sizes[:2]) + sizes[-1]
    cut = selector.select("a boring, tedious film", k=4, task="sst2", budget_tokens=budget)
    assert len(full) == 4
    assert [e.passage.id for e in cut] == [e.passage.id for e in full[:2]]
    prompt = selector.build_prompt("a boring, tedious film", k=2, task="sst2")
    assert prompt.endswith(f"{full[0].passage.contents}\n\na boring, tedious film\n")
    last = selector.select("a boring, tedious film", k=4, task="sst2", budget_tokens=budget, order="best_last")
    assert [e.passage.id for e in last] == [e.passage.id for e in full[:2]][::-1]  # the same two, best last
    first = selector.build_prompt("a boring, tedious film", k=2, task="sst2", order="best_first")
    assert first.startswith(full[0].passage.contents)
    with pytest.raises(ValueError, match="order must be"):
        selector.select("x", order="similar")  # type: ignore[arg-type]


def test_diversity_and_label_balance(selector: llmr.Selector) -> None:
    query = "a boring film with wooden acting"
    plain = selector.select(query, k=2, task="sst2")
    assert {e.passage.id for e in plain} == {"sst2-5", "sst2-6"}  # the item and its near-copy
    diverse = selector.select(query, k=2, task="sst2", diversity=0.7)
    assert diverse[0].passage.id == plain[0].passage.id and diverse[1].passage.id not in {"sst2-5", "sst2-6"}
    mixed = selector.select(query, k=2, task="sst2", balance_labels=True)
    assert mixed[0].passage.id == plain[0].passage.id
    assert {e.passage.contents.rsplit("\n", 1)[1] for e in mixed} == {"Positive", "Negative"}


def test_add_extends_the_index_in_place() -> None:
    sel = llmr.Selector.load("all-minilm-l6-v2", pool())
    index, before = sel.index, sel.fingerprint
    assert sel.add([{"query": "The senate passed the budget bill", "answer": "World", "task_name": "ag_news"}]) == 1
    assert sel.index is index and len(index) == len(pool()) + 1 and sel.fingerprint != before
    top = sel.select("the budget bill passed the senate", k=1, task="ag_news")[0]
    assert top.passage.contents.endswith("World")
    with pytest.raises(ValueError, match="already in the pool"):
        sel.add([{"id": "news-0", "contents": "dup\nBusiness"}])
    with pytest.raises(ValueError, match="already in the pool"):
        sel.add([{"id": "a", "contents": "x\ny"}, {"id": "a", "contents": "z\ny"}])


def test_hnsw_index_agrees_with_flat_on_a_small_pool(selector: llmr.Selector) -> None:
    approx = llmr.Selector.load("all-minilm-l6-v2", pool(), index="hnsw")
    for q in ("a dull movie", "interest rates", "new phones"):
        assert [e.passage.id for e in approx.select(q, k=3)] == [e.passage.id for e in selector.select(q, k=3)]
        assert [e.passage.id for e in approx.select(q, k=2, task="sst2")] == [
            e.passage.id for e in selector.select(q, k=2, task="sst2")
        ]


def test_load_reads_a_passages_file(tmp_path) -> None:
    from llmr.data.jsonl import write_jsonl

    path = tmp_path / "passages.jsonl.gz"
    write_jsonl(
        path, [Passage(id=p["id"], contents=f"{p['query']}\n{p['answer']}", task_name=p["task_name"]) for p in pool()]
    )
    sel = llmr.Selector.load("all-minilm-l6-v2", path)
    assert len(sel) == len(pool()) and sel.tasks == ["ag_news", "sst2"]


def _encoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many texts each pool-encoding call gets from now on."""
    from llmr.base.encoders import Encoder

    calls: list[int] = []
    original = Encoder.encode_documents
    monkeypatch.setattr(
        Encoder, "encode_documents", lambda self, texts: calls.append(len(texts)) or original(self, texts)
    )
    return calls


def test_a_saved_selector_loads_without_encoding_the_pool_and_selects_the_same(
    selector: llmr.Selector, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    selector.save(tmp_path / "saved")
    calls = _encoded(monkeypatch)
    loaded = llmr.Selector.load(tmp_path / "saved")
    assert sum(calls) <= 1  # the dimension probe only, not the pool of 10
    assert loaded.fingerprint == selector.fingerprint and loaded.tasks == selector.tasks
    for q in ("a dull movie", "interest rates"):
        assert [(e.passage.id, round(e.score, 5)) for e in loaded.select(q, k=3)] == [
            (e.passage.id, round(e.score, 5)) for e in selector.select(q, k=3)
        ]
    with pytest.raises(ValueError, match="its own pool"):
        llmr.Selector.load(tmp_path / "saved", pool())
    with pytest.raises(ValueError, match="give a pool"):
        llmr.Selector.load("all-minilm-l6-v2")


def test_a_saved_selector_is_refused_when_its_encoder_changed(selector: llmr.Selector, tmp_path) -> None:
    import json

    folder = selector.save(tmp_path / "saved")
    meta = json.loads((folder / "selector.json").read_text())
    (folder / "selector.json").write_text(json.dumps({**meta, "encoder": "sha256:other-weights"}))
    with pytest.raises(ValueError, match="other weights"):
        llmr.Selector.load(folder)


def test_added_passages_survive_a_restart_without_encoding_and_a_torn_journal_line_is_dropped(
    tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "saved"
    first = llmr.Selector.load("all-minilm-l6-v2", pool())
    first.save(folder)
    first.keep_additions(folder)
    first.add([{"id": "w1", "query": "The senate passed the budget bill", "answer": "World", "task_name": "ag_news"}])
    with open(folder / "added.jsonl", "a") as fh:
        fh.write('{"id": "w2", "conte')  # a kill in the middle of the next addition
    calls = _encoded(monkeypatch)
    again = llmr.Selector.load(folder)
    assert calls == [1]  # the dimension probe only: the addition's vector was kept with it
    assert "dropped a torn last record" in caplog.text
    assert len(again) == len(pool()) + 1 and "w1" in {p.id for p in again.passages}
    assert not (folder / "added.jsonl").exists()  # folded into the saved index
    assert again.select("the budget bill passed the senate", k=1, task="ag_news")[0].passage.id == "w1"


# -- the HTTP service ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(selector: llmr.Selector):
    from llmr.serving.service import Limits, background_server, create_app

    sel = llmr.Selector.load("all-minilm-l6-v2", pool())
    limits = Limits(
        max_k=8,
        max_queries=4,
        max_results=24,
        max_body_bytes=20_000,
        max_passages=3,
        max_passage_chars=2_000,
        max_pool_size=len(pool()) + 5,
        max_response_bytes=2_000,
        body_timeout_s=0.5,
        max_in_flight=64,  # the batching test sends 40 at once
        allow_additions=True,
    )
    with background_server(create_app(sel, limits, token=TOKEN)) as url:
        yield url


TOKEN = "s3cret"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def test_service_selects_prompts_and_adds(service: str, selector: llmr.Selector) -> None:
    with httpx.Client(base_url=service) as client:
        assert client.get("/healthz").json() == {
            "status": "ok",
            "pool_size": len(pool()),
            "pools": {"default": len(pool())},
        }
        info = client.get("/v1/info").json()
        assert info["pool_size"] == len(pool()) and info["limits"]["max_k"] == 8 and info["index"] == "flat"
        got = client.post("/v1/select", json={"query": "a dull movie", "k": 2, "task": "sst2"})
        assert got.status_code == 200
        expected = [e.passage.id for e in selector.select("a dull movie", k=2, task="sst2")]
        assert [e["id"] for e in got.json()["results"][0]] == expected
        batch = client.post("/v1/select", json={"queries": ["a dull movie", "rates rose"], "k": 1}).json()
        assert len(batch["results"]) == 2 and batch["results"][1][0]["task_name"] == "ag_news"
        prompt = client.post("/v1/prompt", json={"query": "a dull movie", "k": 2, "task": "sst2"}).json()
        assert prompt["prompts"][0] == selector.build_prompt("a dull movie", k=2, task="sst2")
        added = client.post(
            "/v1/passages",
            json={"passages": [{"query": "Parliament votes", "answer": "World", "task_name": "ag_news", "id": "w1"}]},
            headers=AUTH,
        )
        assert added.json() == {"added": 1, "pool_size": len(pool()) + 1}
        top = client.post("/v1/select", json={"query": "parliament voted", "k": 1, "task": "ag_news"}).json()
        assert top["results"][0][0]["id"] == "w1"
        raw = {"task": "sst2", "fields": {"sentence": "a dull movie"}, "k": 2}
        templated = 'Review: "a dull movie" Is this movie review sentence negative or positive?'
        by_fields = client.post("/v1/prompt", json=raw).json()
        assert by_fields["prompts"][0] == selector.build_prompt(templated, k=2, task="sst2")
        assert by_fields["prompts"][0].endswith(f"\n\n{templated}\n")  # the query reads like the examples
        inputs = client.post("/v1/select", json={**raw, "fields": None, "inputs": [raw["fields"]] * 2}).json()
        ranked = client.post("/v1/select", json=raw).json()["results"][0]
        assert inputs["results"] == [ranked, ranked] and ranked[0]["score"] >= ranked[1]["score"]  # best first
        assert client.post("/v1/select", json={**raw, "order": "best_last"}).json()["results"][0] == ranked[::-1]
        assert by_fields["examples"][0] == ranked[::-1]  # a prompt's examples: best last, as shown
        again = client.post("/v1/passages", json={"passages": [{"id": "w1", "contents": "x\ny"}]}, headers=AUTH)
        assert again.status_code == 409
        assert client.get("/openapi.json").status_code == 413  # ~7 kB: over this service's 2 kB, as any response


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({}, 422, "exactly one of"),
        ({"query": "a", "queries": ["b"]}, 422, "exactly one of"),
        ({"query": ""}, 422, "at least 1 character"),
        ({"query": "a", "k": 0}, 422, "greater than or equal to 1"),
        ({"query": "a", "k": 9}, 422, "limit of 8"),
        ({"query": "a", "kk": 2}, 422, "Extra inputs"),
        ({"query": "a", "task": "mnli"}, 422, "unknown task"),
        ({"query": "a", "diversity": 2}, 422, "less than or equal to 1"),
        ({"queries": ["a"] * 5}, 413, "limit is 4"),
        ({"query": "a" * 30_000}, 413, "bytes"),
        ({"query": 3}, 422, "valid string"),
        ({"query": "a", "k": "5"}, 422, "valid integer"),  # no coercion
        ({"query": "a", "k": True}, 422, "valid integer"),
        ({"queries": ["a", ""]}, 422, "at least 1 character"),
        ({"query": "a", "balance_labels": "yes"}, 422, "valid boolean"),
        ({"queries": ["a"] * 4, "k": 7}, 413, "over 24 results"),
        ({"query": "a", "k": 8}, 200, ""),
        ({"fields": {"sentence": "a"}}, 422, "need a known `task`"),
        ({"fields": {"sentense": "a"}, "task": "sst2"}, 422, "unknown field 'sentense'"),
        ({"inputs": [{"sentence": "a"}, {}], "task": "sst2"}, 422, "field 'sentence' missing"),
        ({"query": "a", "fields": {"sentence": "a"}, "task": "sst2"}, 422, "exactly one of"),
        ({"query": "a", "order": "worst_first"}, 422, "best_first"),
        ({"queries": ["a", " \n "]}, 422, "empty query (query 1)"),
    ],
)
def test_service_refuses_bad_requests_clearly(service: str, body: dict, status: int, message: str) -> None:
    got = httpx.post(f"{service}/v1/select", json=body)
    assert got.status_code == status, got.text
    assert message in got.text


def test_service_returns_what_there_is_for_k_over_the_task_and_says_so(service: str) -> None:
    n = httpx.get(f"{service}/v1/info").json()["tasks"]["ag_news"]  # the service's own pool: tests add to it
    for endpoint, key in (("/v1/select", "results"), ("/v1/prompt", "examples")):
        got = httpx.post(f"{service}{endpoint}", json={"query": "rates", "k": 8, "task": "ag_news"}).json()
        assert len(got[key][0]) == n
        assert got["warnings"] == [f"k = 8 is over the {n} items of task 'ag_news': at most {n} returned"]
    enough = httpx.post(f"{service}/v1/select", json={"query": "rates", "k": n, "task": "ag_news"})
    assert enough.json()["warnings"] == []


def test_service_filters_with_where_and_returns_ranks(service: str) -> None:
    body = {"query": "a boring film", "k": 2, "where": {"task_name": "ag_news"}}
    got = httpx.post(f"{service}/v1/select", json=body).json()
    assert [e["task_name"] for e in got["results"][0]] == ["ag_news", "ag_news"]
    assert [e["rank"] for e in got["results"][0]] == [1, 2]
    one = httpx.post(f"{service}/v1/select", json={**body, "where": {"id": "news-1"}}).json()
    assert [e["id"] for e in one["results"][0]] == ["news-1"] and "filter" in one["warnings"][0]


def test_service_refuses_malformed_json_and_bad_examples(service: str) -> None:
    bad = httpx.post(f"{service}/v1/select", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 422 and "JSON" in bad.text
    assert httpx.post(f"{service}/v1/passages", json={"passages": [{"query": "q"}]}, headers=AUTH).status_code == 422
    four = httpx.post(f"{service}/v1/passages", json={"passages": [{"contents": "x\ny"}] * 4}, headers=AUTH)
    assert four.status_code == 413
    assert httpx.get(f"{service}/healthz").status_code == 200  # still up


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(service: str, selector: llmr.Selector) -> None:
    queries = ["a dull movie", "a joyful film", "rates rose", "a goal in the final"] * 10

    async def run() -> list[list[str]]:
        async with httpx.AsyncClient(base_url=service, timeout=60) as client:  # 5 s is tight on busy cores
            replies = await asyncio.gather(*(client.post("/v1/select", json={"query": q, "k": 2}) for q in queries))
        return [[e["id"] for e in r.json()["results"][0]] for r in replies]

    expected = {q: [e.passage.id for e in selector.select(q, k=2)] for q in set(queries)}
    assert asyncio.run(run()) == [expected[q] for q in queries]


def test_additions_are_off_by_default_and_need_the_token(service: str, selector: llmr.Selector) -> None:
    from llmr.serving.service import Limits, background_server, create_app

    one = {"passages": [{"contents": "x\ny"}]}
    with background_server(create_app(selector)) as url:
        got = httpx.post(f"{url}/v1/passages", json=one, headers=AUTH)
        assert got.status_code == 403 and "--allow-additions" in got.text
    with pytest.raises(ValueError, match="token"):
        create_app(selector, Limits(allow_additions=True))
    assert httpx.post(f"{service}/v1/passages", json=one).status_code == 401
    assert httpx.post(f"{service}/v1/passages", json=one, headers={"authorization": "Bearer wrong"}).status_code == 401
    assert "s3cret" not in httpx.get(f"{service}/v1/info").text


def test_additions_are_bounded_per_passage_and_in_total(service: str) -> None:
    big = httpx.post(f"{service}/v1/passages", json={"passages": [{"contents": "x" * 2_001}]}, headers=AUTH)
    assert big.status_code == 413 and "passage 0 has over 2000 characters" in big.text
    for _ in range(2):  # 3 + 3 passes the pool's limit (10 + 5) on the second request at the latest
        total = httpx.post(f"{service}/v1/passages", json={"passages": [{"contents": "x\ny"}] * 3}, headers=AUTH)
    assert total.status_code == 507 and "pool is full: 15 passages at most" in total.text


def test_lone_surrogates_and_chunked_bodies_over_the_cap_are_refused(service: str) -> None:
    surrogate = httpx.post(
        f"{service}/v1/select", content=b'{"query": "\\ud800"}', headers={"content-type": "application/json"}
    )
    assert surrogate.status_code == 422 and "unicode" in surrogate.text

    def chunks():  # no Content-Length: the cap must count what streams in
        for _ in range(100):
            yield b" " * 1000

    got = httpx.post(f"{service}/v1/select", content=chunks(), headers={"content-type": "application/json"})
    assert got.status_code == 413 and "over 20000 bytes" in got.text


def test_a_response_over_its_byte_cap_is_refused(service: str) -> None:
    got = httpx.post(f"{service}/v1/select", json={"queries": ["a dull movie"] * 4, "k": 6})
    assert got.status_code == 413 and "response would be over 2000 bytes" in got.text


def test_stalled_bodies_and_silent_connections_are_closed(service: str, selector: llmr.Selector) -> None:
    import socket
    from urllib.parse import urlsplit

    from llmr.serving.service import Limits, background_server, create_app

    host, port = urlsplit(service).hostname, urlsplit(service).port
    with socket.create_connection((host, port), timeout=5) as sock:  # promises 100 bytes, sends 2
        sock.sendall(b"POST /v1/select HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{}")
        assert b" 408 " in sock.recv(4096).split(b"\r\n")[0] + b" "
    with background_server(create_app(selector, Limits(head_timeout_s=0.3))) as url:
        address = (urlsplit(url).hostname, urlsplit(url).port)
        with socket.create_connection(address, timeout=5) as sock:  # connects, never sends a request
            assert sock.recv(1) == b""  # the server closed it


def test_an_empty_pool_answers_503_not_500() -> None:
    from llmr.serving.service import background_server, create_app

    empty = llmr.Selector.load("all-minilm-l6-v2", [])
    with background_server(create_app(empty)) as url:
        got = httpx.post(f"{url}/v1/select", json={"query": "a"})
        assert got.status_code == 503 and "pool is empty" in got.text


def test_responses_written_by_orjson_keep_their_schema_and_write_nan_as_null(
    selector: llmr.Selector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """select and prompt build their bodies as dicts (no response models per request): each must still read as
    its declared model, field for field, and a NaN or NumPy score must not fail the response."""
    from llmr.evaluation.selectors import Example
    from llmr.serving.service import ExampleOut, PromptResponse, SelectResponse, background_server, create_app

    with background_server(create_app(selector)) as url:
        select = httpx.post(f"{url}/v1/select", json={"query": "a dull movie", "k": 2}).json()
        prompt = httpx.post(f"{url}/v1/prompt", json={"queries": ["a dull movie", "rates"], "k": 2}).json()
        assert SelectResponse.model_validate(select).model_dump() == select
        assert PromptResponse.model_validate(prompt).model_dump() == prompt
        assert set(select["results"][0][0]) == set(ExampleOut.model_fields)
        passage = Passage(id="p", contents="x\ny", task_name="sst2", extra="not shown")
        odd = [Example(passage, float("nan"), 1), Example(passage, np.float32(0.5), np.int64(2))]
        monkeypatch.setattr(selector, "select_many", lambda queries, *_, **__: [odd for _ in queries])
        got = httpx.post(f"{url}/v1/select", json={"query": "a", "k": 2})
    assert got.status_code == 200, got.text
    assert [(e["score"], e["rank"]) for e in got.json()["results"][0]] == [(None, 1), (0.5, 2)]
    assert "extra" not in got.json()["results"][0][0]


def test_request_log_is_one_line_per_request_and_bounded_in_a_storm(caplog: pytest.LogCaptureFixture) -> None:
    from llmr.serving.service import RequestLog

    request_log = RequestLog(per_second=10)
    with caplog.at_level("INFO", logger="llmr.serve"):
        for _ in range(500):
            request_log("POST", "/v1/select", 422, 1.5)
        request_log.window -= 1.0  # the next second
        request_log("GET", "/healthz", 200, 0.2)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "POST /v1/select 422 1.5 ms" and len(lines) == 12
    assert lines[10] == "490 request lines dropped (over 10 a second)" and lines[11].startswith("GET /healthz 200")


def _serving_bench() -> Any:
    """benchmarks/serving.py as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "serving.py"
    spec = importlib.util.spec_from_file_location("serving_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.slow
def test_service_survives_10k_requests_with_malformed_ones(selector: llmr.Selector) -> None:
    """The load generator of benchmarks/serving.py: every valid request gets 200 with k examples, every
    malformed one (bad JSON, unknown field, k over the limit, too many queries) its 4xx; no 5xx."""
    from llmr.serving.service import background_server, create_app

    bench = _serving_bench()
    queries = [q for q, _ in REVIEWS + NEWS]
    sel = llmr.Selector.load("all-minilm-l6-v2", pool() + [{"contents": f"filler {i}\nx"} for i in range(8)])
    with background_server(create_app(sel)) as url:
        result = asyncio.run(bench.load(url, queries, 10_000, 32))
        assert httpx.get(f"{url}/healthz").status_code == 200
    assert result["wrong"] == 0, result
    assert set(result["statuses"]) <= {200, 413, 422} and result["statuses"][200] == 9_000


def test_the_wrk_load_generator_missing_is_one_line_on_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    bench = _serving_bench()
    monkeypatch.setattr(bench.shutil, "which", lambda _: None)
    monkeypatch.setattr(sys, "argv", ["serving.py", "--sizes", "", "--load-generator", "wrk"])
    with pytest.raises(SystemExit) as exit_:
        bench.main()
    assert exit_.value.code == bench.NO_WRK and "apt-get install -y wrk" in bench.NO_WRK and "\n" not in bench.NO_WRK


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (make wrk)")
def test_wrk_rows_count_statuses_check_k_and_wait_after_a_503(selector: llmr.Selector) -> None:
    """benchmarks/serving.py --load-generator wrk: its rows read as the Python client's, from wrk's Lua."""
    from llmr.serving.service import Limits, background_server, create_app

    bench, queries = _serving_bench(), [q for q, _ in REVIEWS + NEWS]
    with background_server(create_app(selector)) as url:
        select = bench.wrk_load(url, queries, 1, 4)
        health = bench.wrk_load(url, queries, 1, 4, "/healthz")
    with background_server(create_app(selector, Limits(max_in_flight=0))) as url:
        shed = bench.wrk_load(url, queries, 1, 2)
    assert set(select["statuses"]) == {200} and select["wrong"] == 0 and select["rps"] > 0, select
    assert set(health["statuses"]) == {200} and health["wrong"] == 0 and health["p99_ms"] > 0, health
    assert set(shed["statuses"]) == {503} and shed["rps"] == 0, shed
    assert 2 <= shed["shed"] <= 4, shed  # each of the 2 connections waits its Retry-After (1 s), not hundreds


def test_requests_past_the_in_flight_cap_get_503_and_idle_connections_do_not_count(selector: llmr.Selector) -> None:
    import socket
    from urllib.parse import urlsplit

    from llmr.serving.service import Limits, background_server, create_app

    with background_server(create_app(selector, Limits(max_in_flight=0))) as url:
        got = httpx.post(f"{url}/v1/select", json={"query": "a"})
        assert got.status_code == 503 and "busy" in got.text
    with background_server(create_app(selector, Limits(max_in_flight=2))) as url:
        address = (urlsplit(url).hostname, urlsplit(url).port)
        idle = [socket.create_connection(address) for _ in range(5)]  # more than the cap, sending nothing
        assert httpx.get(f"{url}/healthz").status_code == 200
        for sock in idle:
            sock.close()


def test_a_passage_added_over_http_survives_a_restart_of_the_service(tmp_path) -> None:
    from llmr.cli.serve import open_selector
    from llmr.serving.service import Limits, background_server, create_app

    folder, add = tmp_path / "index", Limits(allow_additions=True)
    one = {"passages": [{"id": "w1", "query": "The senate passed the budget bill", "answer": "World"}]}
    with background_server(create_app(open_selector("all-minilm-l6-v2", pool(), folder), add, TOKEN)) as url:
        assert httpx.post(f"{url}/v1/passages", json=one, headers=AUTH).json()["pool_size"] == len(pool()) + 1
    with background_server(create_app(open_selector("all-minilm-l6-v2", None, folder), add, TOKEN)) as url:
        assert httpx.get(f"{url}/healthz").json()["pool_size"] == len(pool()) + 1
        got = httpx.post(f"{url}/v1/select", json={"query": "the senate passed the budget", "k": 1}).json()
        assert got["results"][0][0]["id"] == "w1"
