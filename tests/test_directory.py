"""Data folders: the authors' released layout loads unchanged, and what llmr builds loads the same way."""

import shutil
from pathlib import Path

import pytest

from llmr.data.directory import DataDir
from llmr.data.jsonl import DataFileError, write_jsonl
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
