"""`llmr data build`: rows -> passages/train/test + manifest, from folders, samples and the hub loader."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from llmr.data.build import BuildConfig, build
from llmr.data.directory import DataDir
from llmr.data.jsonl import DataFileError
from llmr.data.sources import SAMPLES_DIR, DirectorySource, HubSource, open_source
from llmr.tasks import TASKS, get_task, resolve_tasks


def _write_rows(root: Path, task: str, split: str, rows: list[dict]) -> None:
    (root / task).mkdir(parents=True, exist_ok=True)
    (root / task / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _build(source_dir: Path, out: Path, tasks: str, **kw) -> dict:
    source = DirectorySource(source_dir)
    chosen = resolve_tasks(tasks, available=source.available())
    config = BuildConfig(tasks=tuple(t.name for t in chosen), source=str(source_dir), **kw)
    return build(source, chosen, out, config)


def test_samples_build_pool_train_test(tmp_path: Path) -> None:
    counts = _build(SAMPLES_DIR, tmp_path, "all-available")
    assert counts == {
        "natural_questions": {"pool": 6, "train": 6, "test": 2},
        "copa": {"pool": 6, "train": 6, "test": 2},
        "sst2": {"pool": 8, "train": 8, "test": 2},
        "ag_news": {"pool": 8, "train": 8, "test": 2},
        "arc_e": {"pool": 8, "train": 8, "test": 2},
    }
    data = DataDir(tmp_path)
    passages = {p.id: p for p in data.passages()}
    train = {r.query_id: r for r in data.records("train")}
    assert set(passages) == set(train)  # every pool item is a train record, keyed by its query id
    copa = train["copa_train_0"]
    # Multiple choice: the pool item shows the text of the right option, not its letter.
    assert passages["copa_train_0"].contents == copa.query + "\nWater flowed from the spout."
    assert passages["sst2_train_1"].contents.endswith("\nNegative")
    assert [r.answers for r in data.records("test") if r.task_name == "natural_questions"][1] == [
        "William Shakespeare",
        "Shakespeare",
    ]


def test_manifest_records_config_inputs_outputs(tmp_path: Path) -> None:
    _build(SAMPLES_DIR, tmp_path, "sst2", max_train=3, seed=7)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["stage"] == "data.build"
    assert manifest["config"]["seed"] == 7 and manifest["config"]["max_train"] == 3
    assert set(manifest["inputs"]) == {"sst2/train", "sst2/test"}
    assert all(v.startswith("sha256:") for v in manifest["inputs"].values())
    assert set(manifest["outputs"]) == {"passages.jsonl.gz", "train.jsonl.gz", "test.jsonl.gz"}
    assert manifest["counts"]["sst2"] == {"pool": 8, "train": 3, "test": 2}
    assert {"python", "torch", "pydantic"} <= set(manifest["versions"])
    # The code's commit, where llmr runs from a git checkout (as here, and in CI's clone).
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
    if head.returncode == 0:
        assert manifest["git"].removesuffix("+dirty") == head.stdout.strip()


def test_caps_are_seeded(tmp_path: Path) -> None:
    def train_ids(seed: int, out: str) -> list[str]:
        _build(SAMPLES_DIR, tmp_path / out, "sst2,ag_news", max_train=3, seed=seed)
        return [r.query_id for r in DataDir(tmp_path / out).records("train")]

    a, b, c = train_ids(1, "a"), train_ids(1, "b"), train_ids(2, "c")
    assert a == b and len(a) == 6
    assert a != c
    assert (tmp_path / "a" / "train.jsonl.gz").read_bytes() == (tmp_path / "b" / "train.jsonl.gz").read_bytes()
    # The pool is not capped by default (max_pool).
    assert sum(1 for _ in DataDir(tmp_path / "a").passages()) == 16


def test_held_out_tasks_are_pool_and_test_but_never_training_queries(tmp_path: Path) -> None:
    qnli_row = {"question": "Where is Paris?", "sentence": "Paris is in France.", "label": 0, "idx": 0}
    _write_rows(tmp_path / "src", "qnli", "train", [qnli_row, {**qnli_row, "label": 1, "idx": 1}])
    _write_rows(tmp_path / "src", "qnli", "test", [qnli_row])
    wsc273 = {
        "text": "The trophy doesn't fit into the suitcase because it is too small.",
        "pronoun": "it",
        "pronoun_loc": 48,
        "quote": "it is too small",
        "quote_loc": 48,
        "options": ["the trophy", "the suitcase"],
        "label": 1,
        "source": "test",
    }
    _write_rows(tmp_path / "src", "wsc273", "test", [wsc273])  # wsc273 has no train split at all
    counts = _build(tmp_path / "src", tmp_path / "out", "all-available")
    assert counts == {"wsc273": {"pool": 0, "train": 0, "test": 1}, "qnli": {"pool": 2, "train": 0, "test": 1}}
    assert get_task("qnli").held_out and get_task("wsc273").held_out


def test_pool_cap_and_extra_task_folders_beside_the_shared_copy(tmp_path: Path) -> None:
    """`--source samples,<extra>`: each task from the first folder that has it; the extra folder's
    held-out task (qnli) joins the pool and the test split, never the training queries."""
    from llmr.data.sources import open_source

    qnli_row = {"question": "Where is Paris?", "sentence": "Paris is in France.", "label": 0, "idx": 0}
    _write_rows(tmp_path / "extra", "qnli", "train", [qnli_row, {**qnli_row, "label": 1, "idx": 1}])
    _write_rows(tmp_path / "extra", "qnli", "test", [qnli_row])
    _write_rows(tmp_path / "extra", "sst2", "test", [{"idx": 0, "sentence": "shadowed", "label": 1}])
    source = open_source(f"samples,{tmp_path / 'extra'}")
    assert {"sst2", "qnli"} <= source.available()
    chosen = resolve_tasks("sst2,qnli", available=source.available())
    config = BuildConfig(tasks=("sst2", "qnli"), source=source.describe(), max_pool=3)
    counts = build(source, chosen, tmp_path / "out", config)
    assert counts["qnli"] == {"pool": 2, "train": 0, "test": 1}
    assert counts["sst2"]["pool"] == 3 and counts["sst2"]["train"] > 3  # the cap is on the pool only
    tests = [r.query for r in DataDir(tmp_path / "out").records("test") if r.task_name == "sst2"]
    assert not any("shadowed" in q for q in tests)  # sst2 came from samples, the first source with it


def test_malformed_row_names_file_line_and_field(tmp_path: Path) -> None:
    good = {"idx": 0, "sentence": "fine", "label": 1}
    _write_rows(tmp_path / "src", "sst2", "train", [good, good, {"idx": 2, "label": 0}])
    _write_rows(tmp_path / "src", "sst2", "test", [good])
    with pytest.raises(DataFileError) as err:
        _build(tmp_path / "src", tmp_path / "out", "sst2")
    assert err.value.line == 3 and err.value.field == "sentence"
    assert err.value.path.endswith("sst2/train.jsonl")
    assert not (tmp_path / "out" / "passages.jsonl.gz").exists()  # nothing half-written


def test_unknown_label_value_is_an_error_not_a_skip(tmp_path: Path) -> None:
    _write_rows(tmp_path / "src", "sst2", "train", [{"idx": 0, "sentence": "x", "label": 7}])
    _write_rows(tmp_path / "src", "sst2", "test", [{"idx": 0, "sentence": "x", "label": 1}])
    with pytest.raises(DataFileError, match=r"train\.jsonl:1"):
        _build(tmp_path / "src", tmp_path / "out", "sst2")


def test_missing_task_in_source_is_an_error(tmp_path: Path) -> None:
    source = DirectorySource(SAMPLES_DIR)
    with pytest.raises(FileNotFoundError, match="no rows for task rte"):
        build(source, [get_task("rte")], tmp_path, BuildConfig(tasks=("rte",), source="samples"))


def test_open_source_names() -> None:
    assert isinstance(open_source("samples"), DirectorySource)
    assert isinstance(open_source("hub"), HubSource)
    with pytest.raises(FileNotFoundError, match="task data folder not found"):
        open_source("/nonexistent/folder")


def test_hub_source_asks_datasets_for_the_task_split(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The hub path, run on local rows: load_dataset gets the task's HF id, config and split."""
    import datasets

    calls: list[tuple] = []
    rows = {
        "train": [{"idx": i, "sentence": f"s{i}", "label": i % 2} for i in range(4)],
        "validation": [{"idx": 0, "sentence": "v", "label": 1}],
    }

    def fake_load(path: str, name: str | None = None, split: str | None = None) -> datasets.Dataset:
        calls.append((path, name, split))
        return datasets.Dataset.from_list(rows[split])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    sst2 = get_task("sst2")
    counts = build(HubSource(), [sst2], tmp_path, BuildConfig(tasks=("sst2",), source="hub"))
    assert counts == {"sst2": {"pool": 4, "train": 4, "test": 1}}
    assert (sst2.hf_dataset, None, "train") in calls and (sst2.hf_dataset, None, "validation") in calls
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["inputs"]["sst2/train"].startswith(f"hf:{sst2.hf_dataset}/")


def test_all_available_on_shared_data(shared_tasks_dir: Path, tmp_path: Path) -> None:
    counts = _build(shared_tasks_dir, tmp_path, "all-available", max_train=500, max_test=100)
    assert len(counts) == 25
    assert not set(counts) & {"qnli", "piqa", "wsc273", "yelp", "paws"}
    for name, c in counts.items():
        assert c["pool"] > 0 and 0 < c["train"] <= 500 and 0 < c["test"] <= 100, name
    data = DataDir(tmp_path)
    assert sum(1 for _ in data.passages()) == sum(c["pool"] for c in counts.values())
    for split in ("train", "test"):
        seen: dict[str, int] = {}
        for rec in data.records(split):
            task = TASKS[rec.task_name]
            seen[rec.task_name] = seen.get(rec.task_name, 0) + 1
            assert rec.query.strip() and rec.answers
            if task.mode == "cls":
                assert rec.answers[0] in task.label_words, rec.query_id
            elif task.mode == "mc":
                assert len(rec.options) >= 2 and rec.answers[0] in task.label_words[: len(rec.options)], rec.query_id
        assert seen == {name: c[split] for name, c in counts.items()}


def test_samples_are_nested_so_the_llm_scored_queries_are_among_the_teacher_scored() -> None:
    from llmr.data.build import select_records
    from llmr.data.schema import Record

    records = [
        Record(query_id=f"sst2_train_{i}", query=f"q{i}", answers=["Positive"], task_name="sst2") for i in range(50)
    ]
    big = select_records(records, None, 20, seed=3)
    small = select_records(records, None, 5, seed=3)
    assert len(big) == 20 and len(small) == 5
    assert {r.query_id for r in small} <= {r.query_id for r in big}
    assert select_records(big, None, 5, seed=3) == small  # a sample of the sample: the same five
    assert [r.query_id for r in big] == sorted((r.query_id for r in big), key=lambda q: int(q.rsplit("_", 1)[1]))
    assert {r.query_id for r in select_records(records, None, 5, seed=4)} != {r.query_id for r in small}
