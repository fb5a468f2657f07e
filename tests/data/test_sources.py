"""Manifest parsing: official CSV, JSONL, globs; paths with spaces and unicode; one-line errors."""

import json

import pytest

from jepa_jax.data import sources


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_official_csv_with_spaces_unicode_and_relative_paths(tmp_path):
    manifest = write(tmp_path / "train.csv", "/data/a.mp4 3\n\nclips/my video ü.mp4 7\nb.webm::2\nc.mp4\n")
    entries = sources.read_manifest(manifest)
    assert entries == [sources.Entry("/data/a.mp4", 3), sources.Entry(str(tmp_path / "clips/my video ü.mp4"), 7),
                       sources.Entry(str(tmp_path / "b.webm"), 2), sources.Entry(str(tmp_path / "c.mp4"), 0)]


def test_jsonl_manifest(tmp_path):
    lines = [json.dumps({"path": "/v/x.mp4", "label": 1}), json.dumps({"path": "y.mp4"})]
    entries = sources.read_manifest(write(tmp_path / "m.jsonl", "\n".join(lines) + "\n"))
    assert entries == [sources.Entry("/v/x.mp4", 1), sources.Entry(str(tmp_path / "y.mp4"), 0)]


def test_glob_and_directory(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("sub/b.mp4", "a.webm", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    expected = [sources.Entry(str(tmp_path / "a.webm"), 0), sources.Entry(str(tmp_path / "sub/b.mp4"), 0)]
    assert sources.read_manifest(str(tmp_path)) == expected
    assert sources.read_manifest(str(tmp_path / "**" / "*.mp4")) == expected[1:]


@pytest.mark.parametrize("name,text,message", [
    ("bad.csv", "a.mp4 1\nb.mp4 cat\n", r"bad.csv:2: label 'cat' is not an integer"),
    ("bad.jsonl", '{"path": "a.mp4"}\n{"label": 1}\n', r"bad.jsonl:2: expected a JSON object with a \"path\""),
    ("empty.csv", "\n\n", r"lists no videos"),
])
def test_bad_manifests_name_file_and_line(tmp_path, name, text, message):
    with pytest.raises(ValueError, match=message):
        sources.read_manifest(write(tmp_path / name, text))


def test_missing_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist: give a .csv"):
        sources.read_manifest(str(tmp_path / "nope.csv"))


def test_source_is_random_access_with_stable_repr(tmp_path):
    manifest = write(tmp_path / "m.csv", "a.mp4 1\nb.mp4 2\n")
    source = sources.ManifestSource(manifest)
    assert len(source) == 2 and source[1] == {"path": str(tmp_path / "b.mp4"), "label": 2, "index": 1}
    assert repr(source) == repr(sources.ManifestSource(manifest))
    write(tmp_path / "m.csv", "a.mp4 1\nb.mp4 3\n")
    assert repr(source) != repr(sources.ManifestSource(manifest))
