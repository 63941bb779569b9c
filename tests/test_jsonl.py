import gzip
import json
from pathlib import Path

import pytest

from llmr.base.files import write_json
from llmr.data.jsonl import DataFileError, read_jsonl, write_jsonl
from llmr.data.schema import CandidateList, Passage, Record


def _record(i: int = 0, **kw: object) -> dict:
    return {
        "query_id": f"t_train_{i}",
        "query": f"q{i}",
        "answers": ["A"],
        "options": ["x", "y"],
        "task_name": "t",
        **kw,
    }


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz"])
def test_round_trip_plain_and_gzip(tmp_path: Path, name: str) -> None:
    rows = [Record.model_validate(_record(i)) for i in range(3)]
    assert write_jsonl(tmp_path / name, rows) == 3
    assert list(read_jsonl(tmp_path / name, Record)) == rows
    if name.endswith(".gz"):
        with gzip.open(tmp_path / name, "rt") as fh:
            assert json.loads(fh.readline())["query_id"] == "t_train_0"


def test_gzip_output_is_byte_identical_across_writes(tmp_path: Path) -> None:
    rows = [_record(i) for i in range(5)]
    write_jsonl(tmp_path / "a.jsonl.gz", rows)
    write_jsonl(tmp_path / "b.jsonl.gz", rows)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


def test_bad_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(_record(0)) + "\n\n{not json\n")
    with pytest.raises(DataFileError) as err:
        list(read_jsonl(path, Record))
    assert err.value.line == 3 and err.value.path == str(path) and "bad.jsonl:3" in str(err.value)


def test_missing_field_names_the_field(tmp_path: Path) -> None:
    bad = _record(1)
    del bad["answers"]
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(_record(0)) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DataFileError) as err:
        list(read_jsonl(path, Record))
    assert (err.value.line, err.value.field) == (2, "answers")


def test_wrong_type_inside_list_names_the_element(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    row = {**_record(0), "doc_ids": ["1", "2"], "doc_scores": [0.5, "high"]}
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataFileError) as err:
        list(read_jsonl(path, CandidateList))
    assert err.value.field == "doc_scores.1"


def test_candidate_lengths_must_match(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({**_record(0), "doc_ids": ["1", "2"], "doc_scores": [0.5]}) + "\n")
    with pytest.raises(DataFileError, match="doc_ids has 2 items but doc_scores has 1"):
        list(read_jsonl(path, CandidateList))


@pytest.mark.parametrize("score", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_scores_are_refused_with_file_and_line(tmp_path: Path, score: str) -> None:
    """NaN teacher scores trained an all-NaN retriever with exit 0: they fail where they are read."""
    path = tmp_path / "kd.jsonl"
    good = json.dumps({**_record(0), "doc_ids": ["1", "2"], "doc_scores": [0.5, -100.0]})
    bad = json.dumps({**_record(1), "doc_ids": ["1", "2"], "doc_scores": [0.5, 0.0]}).replace("0.0]", score + "]")
    path.write_text(f"{good}\n{bad}\n")
    with pytest.raises(DataFileError, match="finite number") as err:
        list(read_jsonl(path, CandidateList))
    assert (err.value.line, err.value.field) == (2, "doc_scores.1")


@pytest.mark.parametrize("name", ["bad.jsonl", "bad.jsonl.gz"])
def test_a_bad_byte_is_reported_on_its_own_line(tmp_path: Path, name: str) -> None:
    """The text stream decoded 8 KiB ahead: a bad byte on line 4 was reported as line 1."""
    lines = [json.dumps({"id": f"p{i}", "contents": "a\nb", "task_name": "t"}).encode() for i in range(6)]
    lines[3] = lines[3].replace(b"a", b"caf\xe9", 1)
    data = b"\n".join(lines) + b"\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(DataFileError, match="not UTF-8") as err:
        list(read_jsonl(path, Passage))
    assert err.value.line == 4


def test_integer_ids_are_read_as_strings() -> None:
    p = Passage.model_validate({"id": 7, "contents": "a\nb", "task_name": "t"})
    c = CandidateList.model_validate({**_record(0), "doc_ids": [3, "4"], "doc_scores": [1, 2.5]})
    assert p.id == "7" and c.doc_ids == ["3", "4"] and c.doc_scores == [1.0, 2.5]


def test_extra_fields_are_kept(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "x.jsonl", [Record.model_validate(_record(0, source="kd"))])
    (row,) = read_jsonl(tmp_path / "x.jsonl")
    assert row["source"] == "kd"


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.gz"
    write_jsonl(path, [_record(0)])
    before = path.read_bytes()

    def rows():
        yield _record(1)
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl.gz"]


def test_write_json_is_sorted_and_atomic(tmp_path: Path) -> None:
    write_json(tmp_path / "m.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [1, 2], "b": 1}
    assert list(tmp_path.iterdir()) == [tmp_path / "m.json"]


def test_a_new_cache_folder_is_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tempfile

    from llmr.base.files import cache_dir

    monkeypatch.setenv("LLMR_CACHE", str(tmp_path / "new" / "cache"))
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:  # as the model conversion does
        assert Path(tmp).parent == tmp_path / "new" / "cache"


def test_a_full_disk_names_the_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk said "[Errno 28] No space left on device", naming no file."""
    import builtins
    import errno

    from llmr.data import jsonl

    full = builtins.open  # /dev/full: every write fails with ENOSPC, as on a full disk
    monkeypatch.setattr(jsonl, "open", lambda path, mode: full("/dev/full", mode), raising=False)
    monkeypatch.setattr(Path, "write_text", lambda self, text, encoding=None: full("/dev/full", "w").write(text))
    for path, write in ((tmp_path / "rows.jsonl.gz", write_jsonl), (tmp_path / "report.json", write_json)):
        with pytest.raises(OSError, match="No space left on device") as err:
            write(path, [{"query": "x" * 100_000}])
        assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
    assert not list(tmp_path.iterdir())  # no temp file left behind
