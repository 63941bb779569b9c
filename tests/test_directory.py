"""Data folders: the authors' released layout loads unchanged, and what llmr builds loads the same way."""

import shutil
from pathlib import Path

import pytest

from llmr.data.directory import DataDir
from llmr.data.jsonl import DataFileError, read_jsonl, write_jsonl
from llmr.data.schema import CandidateList, Passage, Record

RELEASED = Path(__file__).parent / "fixtures" / "released"


def test_released_folder_loads_unchanged() -> None:
    data = DataDir(RELEASED)
    assert data.validate() == {"bm25_train": 2, "kd_bm25_train": 2, "passages": 4, "test": 2, "train": 2}
    passages = list(data.passages())
    assert all(isinstance(p, Passage) for p in passages) and passages[2].id == "2"
    (copa,) = [r for r in data.records("train") if r.task_name == "copa"]
    assert copa.answers == ["A"] and len(copa.options) == 2
    cands = list(data.candidates("bm25_train"))
    assert isinstance(cands[0], CandidateList) and cands[0].doc_ids == ["1", "0", "3"]
    assert cands[0].doc_scores == [12.5, 11.0, 3.25]
    kd = list(data.candidates("kd_bm25_train"))
    assert kd[0].doc_scores[1] == -100.0
    nq = next(r for r in data.records("test") if r.task_name == "natural_questions")
    assert nq.answers == ["Leonardo da Vinci", "da Vinci"]


def test_round_trip_keeps_released_rows(tmp_path: Path) -> None:
    data = DataDir(RELEASED)
    write_jsonl(tmp_path / "bm25_train.jsonl.gz", data.candidates())
    assert list(DataDir(tmp_path).candidates()) == list(data.candidates())


def test_missing_file_lists_what_is_there(tmp_path: Path) -> None:
    shutil.copy(RELEASED / "train.jsonl.gz", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"no passages\.jsonl\[\.gz\] \(found: train\)"):
        DataDir(tmp_path).path("passages")


def test_bad_row_in_folder_is_reported_with_its_line(tmp_path: Path) -> None:
    rows = [r.model_dump() for r in DataDir(RELEASED).records("train")]
    rows[1]["answers"] = "A"  # a string instead of a list
    write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataFileError) as err:
        DataDir(tmp_path).validate()
    assert (err.value.line, err.value.field) == (2, "answers")


def test_records_are_records() -> None:
    assert all(isinstance(r, Record) for r in DataDir(RELEASED).records("test"))


# -- bad data: one error naming the file, the line and the field -------------------------------


def _folder(tmp_path: Path, passages: list[str] | None = None, train: list[str] | None = None) -> DataDir:
    ok = '{"id": "p0", "contents": "Review: good\\nPositive", "task_name": "sst2"}'
    (tmp_path / "passages.jsonl").write_text("\n".join(passages or [ok]) + "\n")
    if train is not None:
        (tmp_path / "train.jsonl").write_text("\n".join(train) + "\n")
    return DataDir(tmp_path)


COPA = '{{"query_id": "c{i}", "query": "q", "answers": ["{a}"], "options": {o}, "task_name": "copa"}}'


@pytest.mark.parametrize(
    ("train", "line", "field", "message"),
    [
        (
            [COPA.format(i=0, a="A", o='["x", "y"]'), COPA.format(i=1, a="D", o='["x", "y"]')],
            2,
            "answers",
            "not one of its 2 options",
        ),
        ([COPA.format(i=0, a="A", o="[]")], 1, "options", "at least 2 non-empty options"),
        (
            ['{"query_id": "1", "query": "q", "answers": ["Positive"], "task_name": "mystery"}'],
            1,
            "task_name",
            "unknown task",
        ),
        (
            ['{"query_id": "1", "query": " ", "answers": ["Positive"], "task_name": "sst2"}'],
            1,
            "query",
            "must not be empty",
        ),
        (
            ['{"query_id": "1", "query": "q", "answers": ["Maybe"], "task_name": "sst2"}'],
            1,
            "answers",
            "not a sst2 label",
        ),
        (
            ['{"query_id": "1", "query": "q", "answers": ["Positive"], "task_name": "sst2"}'] * 2,
            2,
            "query_id",
            "repeats line 1",
        ),
    ],
)
def test_records_that_would_fail_later_fail_on_reading(tmp_path: Path, train, line, field, message) -> None:
    folder = _folder(tmp_path, train=train)
    with pytest.raises(DataFileError, match=message) as err:
        folder.validate()  # what `llmr data inspect` runs, and every stage's reader
    assert (err.value.path, err.value.line, err.value.field) == (str(tmp_path / "train.jsonl"), line, field)


def test_duplicate_pool_ids_and_empty_candidate_lists_are_refused(tmp_path: Path) -> None:
    item = '{"id": "p0", "contents": "Review: good\\nPositive", "task_name": "sst2"}'
    with pytest.raises(DataFileError, match=r"passages.jsonl:2: field 'id': 'p0' repeats line 1"):
        list(_folder(tmp_path, passages=[item, item]).passages())
    (tmp_path / "passages.jsonl").write_text(item + "\n")
    (tmp_path / "bm25_train.jsonl").write_text(
        '{"query_id": "1", "query": "q", "answers": ["Positive"], "task_name": "sst2",'
        ' "doc_ids": [], "doc_scores": []}\n'
    )
    with pytest.raises(DataFileError, match=r"doc_ids.*at least one candidate"):
        list(DataDir(tmp_path).candidates())


def test_inspect_refuses_doc_ids_not_in_the_pool(tmp_path: Path) -> None:
    shutil.copytree(RELEASED, tmp_path / "data")
    kd = tmp_path / "data" / "kd_bm25_train.jsonl.gz"
    rows = list(read_jsonl(kd))
    rows[1]["doc_ids"][0] = "no-such-item"
    write_jsonl(kd, rows)
    with pytest.raises(DataFileError, match="'no-such-item' is not in the pool") as err:
        DataDir(tmp_path / "data").validate()
    assert (err.value.path, err.value.line, err.value.field) == (str(kd), 2, "doc_ids")


def test_broken_files_name_the_file_and_line(tmp_path: Path) -> None:
    import gzip

    good = b'{"id": "p0", "contents": "a\\nb", "task_name": "sst2"}\n'
    cases = {
        "latin1.jsonl": (good + b'{"id": "p1", "contents": "caf\xe9\\nb", "task_name": "sst2"}\n', "not UTF-8"),
        "plain.jsonl.gz": (good, "not a valid gzip file"),
        "cut.jsonl.gz": (gzip.compress(good * 2000)[:-100], "ends early"),
        "huge.jsonl": (b'{"id": "p0", "contents": "' + b"x" * 1_100_000 + b'", "task_name": "sst2"}\n', "the limit is"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DataFileError, match=message) as err:
            list(read_jsonl(path, Passage))
        assert str(path) in str(err.value) and err.value.line >= 1, name
