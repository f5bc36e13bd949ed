"""Readers of cached posts: every format, every bad-row kind, strict mode, `crisislens validate`.

Fixtures under fixtures/posts/ are hand-made (invented texts, 8x8 images); bad inputs are
written into tmp_path by each test.
"""

from __future__ import annotations

import codecs

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import crisislens.runtime.cli.parser as cli_module
from crisislens.runtime.readers import ReadError, ReadProblem, ReadReport, iter_posts, read_posts
from crisislens.runtime.schema import Post

FIXTURES = Path(__file__).parent / "fixtures" / "posts"
CRISISMMD = FIXTURES / "crisismmd" / "task_humanitarian_sample.tsv"


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def jsonl(*rows: dict | str) -> str:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows)


def only_error(report: ReadReport) -> ReadProblem:
    assert len(report.errors) == 1, report.problems
    return report.errors[0]


@pytest.fixture
def image(tmp_path: Path) -> Path:
    """A real (tiny) image at tmp_path/img/flood.jpg."""
    return write(tmp_path / "img" / "flood.jpg", (FIXTURES / "images" / "bridge.jpg").read_bytes())


# --- formats -------------------------------------------------------------------------------


def test_jsonl_fixture_text_image_and_both():
    report = read_posts([FIXTURES / "posts.jsonl"])
    assert report.problems == []
    assert report.rows_seen == 3  # the blank line is not a row
    both, text_only, image_only = report.posts
    assert both.has_text and both.image == (FIXTURES / "images" / "shelter.png").resolve()
    assert both.created_at == "2023-06-15T08:12:00Z" and both.label == "affected_individuals"
    assert text_only.id == "2" and text_only.image is None  # JSON number id -> str
    assert text_only.label == "infrastructure_and_utility_damage"  # vehicle_damage, 8 -> 5 classes
    assert text_only.metadata == {"lang": "en"}
    assert text_only.source == "posts.jsonl"
    assert image_only.text is None and image_only.image.is_absolute()
    assert image_only.source == "field-team-2"  # a row's own source wins
    assert report.files == [FIXTURES / "posts.jsonl"]


def test_csv_fixture_aliases_and_quoting():
    report = read_posts([FIXTURES / "posts.csv"])
    assert report.problems == []
    c1, c2, c3 = report.posts
    assert (c1.id, c1.has_image, c1.label) == ("c1", False, "rescue_volunteering_or_donation_effort")
    assert c1.text == "Volunteers needed at the school gym, bring blankets"
    assert (c2.text, c2.image.name) == (None, "bridge.jpg")
    assert c3.text == 'Stay away from the river bank tonight, "warning" issued' and c3.label is None


def test_tsv_fixture():
    report = read_posts([FIXTURES / "posts.tsv"])
    assert report.problems == []
    assert [(p.id, p.has_text, p.has_image, p.created_at) for p in report.posts] == [
        ("t1", True, False, "2023-06-16"),
        ("t2", True, True, None),
    ]


def test_folder_of_pairs_sorted_by_id():
    report = read_posts([FIXTURES / "pairs"])
    assert report.problems == []
    assert [(p.id, p.has_text, p.has_image) for p in report.posts] == [
        ("101", True, True),
        ("102", True, False),
        ("103", False, True),
    ]
    assert report.posts[0].text == "Roof of the clinic blown off, nobody hurt"  # trailing newline dropped
    assert report.posts[0].source == "pairs"


def test_folder_reports_other_files_and_subfolders_as_warnings(tmp_path: Path, image: Path):
    folder = tmp_path / "cache"
    write(folder / "2.TXT", "Shelter open at the stadium")
    write(folder / "1.jpeg", image.read_bytes())
    write(folder / "notes.md", "not a post")
    write(folder / "more.jsonl", "{}\n")
    (folder / "sub").mkdir()
    report = read_posts([folder])
    assert [p.id for p in report.posts] == ["1", "2"]
    assert report.errors == []
    warned = {Path(w.file).name: w.message for w in report.warnings}
    assert set(warned) == {"notes.md", "more.jsonl", "sub"}
    assert "ignored" in warned["notes.md"] and "input of its own" in warned["more.jsonl"]


def test_folder_with_two_images_for_one_id_is_an_error(tmp_path: Path, image: Path):
    folder = tmp_path / "cache"
    write(folder / "7.jpg", image.read_bytes())
    write(folder / "7.png", image.read_bytes())
    report = read_posts([folder])
    assert "several image files for id '7'" in only_error(report).message
    assert report.rows_seen == 1 and report.posts == []


def test_crisismmd_with_image_root():
    report = read_posts([CRISISMMD], image_root=FIXTURES / "crisismmd" / "images")
    first, second, third = report.posts
    assert [p.id for p in report.posts] == ["880000000000000001_0", "880000000000000001_1", "880000000000000002_0"]
    assert first.metadata["tweet_id"] == second.metadata["tweet_id"] == "880000000000000001"  # one tweet, two images
    assert first.metadata["event_name"] == "river_floods"
    assert first.text.startswith('"Boats" are taking')  # no quoting: the quote is text
    assert first.label == "affected_individuals"  # injured_or_dead_people merged
    assert first.image == (FIXTURES / "crisismmd/images/river_floods/15_6_2023/880000000000000001_0.jpg").resolve()
    # the third row's photo is not there: kept as text-only, with a warning
    assert third.image is None and third.label == "not_humanitarian"
    (warning,) = report.problems
    assert (warning.severity, warning.line, warning.post_id) == ("warning", 4, "880000000000000002_0")
    assert third.warnings == (str(warning),)


def test_crisismmd_without_image_root_resolves_next_to_the_file(tmp_path: Path, image: Path):
    header = "event_name\ttweet_id\timage_id\ttweet_text\timage\tlabel\n"
    write(tmp_path / "data_image" / "quake" / "1_1_2020" / "5_0.jpg", image.read_bytes())
    row = "quake\t5\t5_0\tCracks in every wall\tdata_image/quake/1_1_2020/5_0.jpg\tvehicle_damage\n"
    tsv = write(tmp_path / "task.tsv", header + row)
    (post,) = read_posts([tsv]).posts
    assert post.image == (tmp_path / "data_image/quake/1_1_2020/5_0.jpg").resolve()
    assert post.label == "infrastructure_and_utility_damage"


def test_semicolon_csv_is_sniffed(tmp_path: Path):
    path = write(tmp_path / "p.csv", "id;text\n1;Road closed near the dam\n2;Need insulin at camp B\n")
    report = read_posts([path])
    assert [p.text for p in report.posts] == ["Road closed near the dam", "Need insulin at camp B"]


def test_utf8_bom_is_accepted_silently(tmp_path: Path):
    bom = b"\xef\xbb\xbf"
    a = write(tmp_path / "a.jsonl", bom + jsonl({"id": "1", "text": "Evacuate the valley"}).encode())
    b = write(tmp_path / "b.csv", bom + b"id,text\n2,Evacuate the coast\n")
    report = read_posts([a, b])
    assert report.problems == [] and [p.id for p in report.posts] == ["1", "2"]


def test_blank_text_counts_as_no_text(tmp_path: Path, image: Path):
    path = write(tmp_path / "p.jsonl", jsonl({"id": "1", "text": "   ", "image": "img/flood.jpg"}))
    (post,) = read_posts([path]).posts
    assert post.text is None and post.has_image


# --- bad rows ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": "no id here"}, "missing id"),
        ({"id": None, "text": "null id"}, "missing id"),
        ({"id": "  ", "text": "blank id"}, "empty id"),
        ({"id": 1.5, "text": "float id"}, "id must be a string or an integer, not a number"),
        ({"id": True, "text": "bool id"}, "id must be a string or an integer, not a boolean"),
        ({"id": {"x": 1}, "text": "object id"}, "id must be a string or an integer, not an object"),
        ({"id": "1", "text": 42}, "text must be a string, not a number"),
        ({"id": "1", "text": "ok", "image": ["a.jpg"]}, "image must be a string, not an array"),
        ({"id": "1"}, "neither text nor image"),
        ({"id": "1", "text": "", "image": ""}, "neither text nor image"),
        ({"id": "1", "text": "flooded", "label": "flooding"}, "unknown CrisisMMD humanitarian label 'flooding'"),
        ('{"id": "1", "text": "cut off', "malformed JSON: Unterminated string"),
        ('{"id": "1", "text": NaN}', "malformed JSON: NaN is not valid JSON"),
        ("[" * 100_000, "malformed JSON: nested too deeply"),
        ('["1", "a list"]', "expected a JSON object, got an array"),
        ('"just a string"', "expected a JSON object, got a string"),
    ],
)
def test_bad_jsonl_rows_are_skipped_and_reported(tmp_path: Path, row: dict | str, message: str):
    good = {"id": "ok", "text": "Help is on the way"}
    path = write(tmp_path / "p.jsonl", jsonl(good, row))
    report = read_posts([path])
    error = only_error(report)
    assert message in error.message
    assert (error.file, error.line, error.severity) == (str(path), 2, "error")
    assert [p.id for p in report.posts] == ["ok"]
    assert report.rows_seen == 2


def test_duplicate_id_within_a_file_keeps_the_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    rows = jsonl({"id": 42, "text": "first"}, {"id": "x", "text": "other"}, {"id": "42", "text": "again"})
    write(tmp_path / "posts.jsonl", rows)
    report = read_posts(["posts.jsonl"])
    assert str(only_error(report)) == "posts.jsonl:3: duplicate id '42' (first seen at line 1)"
    assert only_error(report).post_id == "42"
    assert [p.text for p in report.posts] == ["first", "other"]


def test_duplicate_id_across_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "a.jsonl", jsonl({"id": "7", "text": "from a"}))
    write(tmp_path / "b.csv", "id,text\n7,from b\n8,only in b\n")
    report = read_posts(["a.jsonl", "b.csv"])
    assert str(only_error(report)) == "b.csv:2: duplicate id '7' (first seen at a.jsonl:1)"
    assert [p.text for p in report.posts] == ["from a", "only in b"]


def test_an_id_whose_first_row_was_rejected_is_not_a_duplicate(tmp_path: Path):
    path = write(tmp_path / "p.jsonl", jsonl({"id": "9", "text": "x", "label": "nope"}, {"id": "9", "text": "kept"}))
    report = read_posts([path])
    assert "unknown" in only_error(report).message
    assert [p.text for p in report.posts] == ["kept"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("../../etc/passwd", "leads outside"),
        ("img/../../../etc/passwd", "leads outside"),
        ("..\\..\\etc\\passwd", "leads outside"),
        ("/etc/passwd", "is absolute"),
        ("C:/Windows/win.ini", "is absolute"),
        ("img/flood.jpg\x00.png", "NUL byte"),
    ],
)
def test_image_paths_must_stay_inside_the_folder(tmp_path: Path, image: Path, ref: str, message: str):
    path = write(tmp_path / "p.jsonl", jsonl({"id": "1", "text": "has text", "image": ref}))
    report = read_posts([path])
    assert report.errors == []  # the photo is left out, like a missing one; the text is triaged
    (warning,) = report.warnings
    assert message in warning.message and "read as text-only" in warning.message
    assert [(p.id, p.image) for p in report.posts] == [("1", None)]


def test_symlink_escaping_the_folder_is_an_error(tmp_path: Path, image: Path):
    inside = tmp_path / "inside"
    write(inside / "ok.jpg", image.read_bytes())
    (inside / "link_out.jpg").symlink_to(image)  # tmp_path/img is outside `inside`
    (inside / "link_in.jpg").symlink_to(inside / "ok.jpg")
    path = write(inside / "p.jsonl", jsonl({"id": "1", "image": "link_out.jpg"}, {"id": "2", "image": "link_in.jpg"}))
    report = read_posts([path])
    assert "leads outside" in only_error(report).message and only_error(report).line == 1
    assert [p.image for p in report.posts] == [(inside / "ok.jpg").resolve()]


def test_symlink_escaping_a_pairs_folder_is_an_error(tmp_path: Path):
    secret = write(tmp_path / "secret.txt", "not a post")
    folder = tmp_path / "cache"
    write(folder / "1.txt", "Road open again")
    (folder / "2.txt").symlink_to(secret)
    report = read_posts([folder])
    error = only_error(report)
    assert Path(error.file).name == "2.txt" and "leads outside" in error.message
    assert [p.id for p in report.posts] == ["1"]


def test_image_root_replaces_the_file_folder(tmp_path: Path, image: Path):
    path = write(tmp_path / "data" / "p.jsonl", jsonl({"id": "1", "image": "flood.jpg"}, {"id": "2", "image": "../p.jsonl"}))
    report = read_posts([path], image_root=tmp_path / "img")
    assert report.posts[0].image == image.resolve()
    assert "leads outside" in only_error(report).message


def test_missing_image_keeps_the_text(tmp_path: Path):
    rows = jsonl({"id": "1", "text": "Photo did not download", "image": "gone.jpg"}, {"id": "2", "image": "gone.jpg"})
    path = write(tmp_path / "p.jsonl", rows)
    report = read_posts([path])
    (post,) = report.posts
    assert post.image is None and post.has_text
    (warning,) = report.warnings
    assert warning.line == 1 and "image 'gone.jpg' not found" in warning.message
    assert post.warnings == (str(warning),)
    assert "not found and the post has no text" in only_error(report).message and only_error(report).line == 2


def test_checking_images_reads_an_unusable_photo_like_a_missing_one(tmp_path: Path, image: Path):
    write(tmp_path / "img" / "junk.jpg", b"not a photo at all")
    rows = jsonl({"id": "1", "text": "Shelter open", "image": "img/junk.jpg"}, {"id": "2", "image": "img/junk.jpg"},
                 {"id": "3", "text": "Bridge out", "image": "img/flood.jpg"})
    path = write(tmp_path / "p.jsonl", rows)
    unchecked = read_posts([path])
    assert [p.image is not None for p in unchecked.posts] == [True, True, True] and not unchecked.problems
    report = read_posts([path], check_images=True)
    assert [(p.id, p.image) for p in report.posts] == [("1", None), ("3", image)]
    (warning,) = report.warnings
    assert warning.line == 1 and warning.message == (
        "image 'img/junk.jpg' cannot be used (not an image file (unknown format or damaged header)); read as text-only")
    assert report.posts[0].warnings == (str(warning),)
    assert [p.origin for p in report.posts] == [f"{path}:1", f"{path}:3"]  # a run's later problems can name them
    error = only_error(report)
    assert error.line == 2 and error.post_id == "2" and "cannot be used" in error.message
    assert error.message.endswith("and the post has no text")


def test_invalid_utf8_in_jsonl_is_replaced_with_a_warning(tmp_path: Path):
    good = json.dumps({"id": "1", "text": "fine"}).encode()
    bad = b'{"id": "2", "text": "caf\xe9 flooded \xff"}'
    path = write(tmp_path / "p.jsonl", good + b"\n" + bad + b"\n")
    report = read_posts([path])
    assert report.errors == []
    (warning,) = report.warnings
    assert (warning.line, warning.post_id) == (2, "2") and "invalid UTF-8" in warning.message
    assert report.posts[1].text == "caf\ufffd flooded \ufffd"
    assert report.posts[1].warnings == (str(warning),)


def test_invalid_utf8_in_csv_names_the_line_and_column(tmp_path: Path):
    content = b'id,text,note\n1,"a text over\ntwo lines",x\n2,bad \xff byte,y\xfe\n'
    report = read_posts([write(tmp_path / "p.csv", content)])
    assert report.errors == []
    (warning,) = report.warnings
    assert warning.line == 4  # the quoted newline in row 1 is counted
    assert "invalid UTF-8" in warning.message and "column text, note" in warning.message
    assert report.posts[0].text == "a text over\ntwo lines"
    assert report.posts[1].text == "bad \ufffd byte" and report.posts[1].metadata == {"note": "y\ufffd"}


def test_lone_surrogate_escape_is_replaced(tmp_path: Path):
    path = write(tmp_path / "p.jsonl", '{"id": "1", "text": "broken \\ud83d emoji", "extra": {"k\\udc00": 1}}\n')
    report = read_posts([path])
    (post,) = report.posts
    assert post.text == "broken \ufffd emoji" and post.metadata == {"extra": {"k\ufffd": 1}}
    assert "lone surrogate" in report.warnings[0].message
    post.to_json().encode("utf-8")  # writable downstream


@pytest.mark.parametrize(
    ("content", "line", "message"),
    [
        ("id,text\n1,ok\n,,\n", 3, "empty row"),
        ("id,text\n1,ok\n2,too,many\n", 3, "row has 3 fields; the header has 2"),
        ("id,text,label\n1,ok,\n2,hm,flooding\n", 3, "unknown CrisisMMD humanitarian label"),
        ("id,text\n1,ok\n2,\n", 3, "neither text nor image"),
        ("id,text\n1,ok\n2,\"quoted\"then text\n", 3, "unreadable row"),
    ],
)
def test_bad_csv_rows(tmp_path: Path, content: str, line: int, message: str):
    report = read_posts([write(tmp_path / "p.csv", content)])
    error = only_error(report)
    assert (error.line, message in error.message) == (line, True)
    assert [p.id for p in report.posts] == ["1"]


def test_csv_blank_lines_are_skipped(tmp_path: Path):
    report = read_posts([write(tmp_path / "p.csv", "id,text\n\n1,ok\n\n")])
    assert report.problems == [] and report.rows_seen == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "a header row is required"),
        ("name,text\nx,hello\n", "header has no id column"),
        ("id,body\n1,hello\n", "header has no text or image column"),
        ("id,text,TEXT\n1,a,b\n", "duplicate column(s) in the header: text"),
    ],
)
def test_bad_csv_headers_are_input_errors(tmp_path: Path, content: str, message: str):
    report = read_posts([write(tmp_path / "p.csv", content)])
    assert message in only_error(report).message and report.posts == []


def test_missing_inputs_and_unknown_formats_do_not_stop_the_read(tmp_path: Path):
    good = write(tmp_path / "good.jsonl", jsonl({"id": "1", "text": "still read"}))
    xlsx = write(tmp_path / "sheet.xlsx", b"PK")
    report = read_posts([tmp_path / "nope.jsonl", xlsx, good, good])
    assert [p.id for p in report.posts] == ["1"]
    assert [(p.severity, p.line) for p in report.problems] == [("error", None), ("error", None), ("warning", None)]
    assert "no such file" in report.problems[0].message
    assert "unknown input format '.xlsx'" in report.problems[1].message
    assert "given twice" in report.problems[2].message
    assert report.files == [good]


# --- strict mode and streaming --------------------------------------------------------------


def test_strict_raises_at_the_first_problem_with_file_and_line(tmp_path: Path):
    path = write(tmp_path / "p.jsonl", jsonl({"id": "1", "text": "ok"}, "{not json", {"id": "1", "text": "dup"}))
    with pytest.raises(ReadError) as caught:
        read_posts([path], strict=True)
    assert caught.value.problem.line == 2
    assert str(caught.value).startswith(f"{path}:2: malformed JSON")


def test_strict_raises_on_warnings_too(tmp_path: Path):
    path = write(tmp_path / "p.jsonl", jsonl({"id": "1", "text": "ok", "image": "gone.jpg"}))
    with pytest.raises(ReadError, match=r"p\.jsonl:1: image 'gone.jpg' not found"):
        read_posts([path], strict=True)


def test_iter_posts_streams_warnings_before_their_post(tmp_path: Path):
    path = write(tmp_path / "p.jsonl", jsonl({"id": "1", "text": "ok", "image": "gone.jpg"}, {"id": "2", "text": "fine"}))
    items = iter_posts(path)  # a single path is fine too
    kinds = [type(item).__name__ for item in items]
    assert kinds == ["ReadProblem", "Post", "Post"]
    strict = iter_posts([write(tmp_path / "q.jsonl", jsonl({"id": "a", "text": "x"}, {"text": "no id"}))], strict=True)
    assert isinstance(next(strict), Post)
    with pytest.raises(ReadError, match="q.jsonl:2: missing id"):
        next(strict)


# --- crisislens validate --------------------------------------------------------------------


@pytest.fixture
def cli_main():
    """`crisislens`: a runtime command such as `validate` loads the runtime's commands only."""
    return cli_module.main


def test_validate_clean_inputs_exit_0(cli_main, capsys):
    code = cli_main(["validate", str(FIXTURES / "posts.jsonl"), str(FIXTURES / "pairs")])
    out = capsys.readouterr().out
    assert code == 0
    assert "posts     6  (with text 4, with image 4, both 2)" in out
    assert "errors    0" in out


def test_validate_lists_problems_and_exits_1(cli_main, capsys, tmp_path: Path):
    path = write(tmp_path / "p.jsonl", jsonl({"id": "1", "text": "ok"}, {"id": "1", "text": "dup"}))
    code = cli_main(["validate", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    assert f"error    {path}:2: duplicate id '1' (first seen at line 1)" in out


def test_validate_json(cli_main, capsys):
    code = cli_main(["validate", str(CRISISMMD), "--image-root", str(FIXTURES / "crisismmd" / "images"), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 0  # a missing image is a warning
    assert {k: data[k] for k in ("rows", "posts", "with_text", "with_image", "with_both", "errors", "warnings")} == {
        "rows": 3,
        "posts": 3,
        "with_text": 3,
        "with_image": 2,
        "with_both": 2,
        "errors": 0,
        "warnings": 1,
    }
    assert data["labels"] == {"affected_individuals": 2, "not_humanitarian": 1}
    assert data["files"] == [str(CRISISMMD)]
    assert data["problems"][0] == {
        "file": str(CRISISMMD),
        "line": 4,
        "message": "image 'data_image/river_floods/16_6_2023/880000000000000002_0.jpg' not found; read as text-only",
        "severity": "warning",
        "post_id": "880000000000000002_0",
    }


def test_validate_reads_each_image_header_unless_told_not_to(cli_main, capsys, tmp_path: Path):
    folder = tmp_path / "cache"
    write(folder / "1.txt", "Water rising")
    write(folder / "1.jpg", b"\x00" * 64)
    write(folder / "2.jpg", b"GIF89a-but-not-really")
    assert cli_main(["validate", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "posts     1  (with text 1, with image 0, both 0)" in out
    assert f"warning  {folder}/1.txt: image '1.jpg' cannot be used (not an image file" in out
    assert f"error    {folder}/2.jpg: image '2.jpg' cannot be used (" in out and "and the post has no text" in out
    assert cli_main(["validate", "--no-image-check", str(folder)]) == 0
    assert "posts     2  (with text 1, with image 2, both 1)" in capsys.readouterr().out


def test_validate_strict_exits_2_without_traceback(cli_main, capsys, tmp_path: Path):
    path = write(tmp_path / "p.jsonl", jsonl({"id": "1", "text": "ok"}, "{oops"))
    code = cli_main(["validate", "--strict", str(path)])
    captured = capsys.readouterr()
    assert code == 2
    assert f"{path}:2: malformed JSON" in captured.err and "Traceback" not in captured.err


def test_validate_bad_image_root_is_a_usage_error(cli_main, capsys, tmp_path: Path):
    assert cli_main(["validate", str(FIXTURES / "posts.jsonl"), "--image-root", str(tmp_path / "none")]) == 2
    assert "--image-root" in capsys.readouterr().err


def test_validate_escapes_control_characters(cli_main, capsys, tmp_path: Path):
    folder = tmp_path / "cache"
    write(folder / "1.txt", "fine")
    write(folder / "\x1b[31mred.md", "sneaky name")
    assert cli_main(["validate", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[31mred.md" in out


# --- fuzzing -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
post_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=4), st.integers(), json_values),
        "text": st.one_of(st.text(max_size=20), json_values),
        "image": st.one_of(st.sampled_from(["a.jpg", "../x.jpg", "/etc/passwd", "", "."]), json_values),
        "label": st.one_of(st.sampled_from(["not_humanitarian", "vehicle_damage", "bogus"]), json_values),
        "created_at": json_values,
        "extra": json_values,
    },
)


def _json_line(draw_value: dict, cut: int | None) -> bytes:
    line = json.dumps(draw_value).encode()
    return line[:cut] if cut is not None else line


jsonish_lines = st.one_of(
    st.binary(max_size=40),
    st.builds(_json_line, post_like, st.none() | st.integers(0, 30)),
    st.builds(lambda v: json.dumps(v).encode(), json_values),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(jsonish_lines, max_size=8))
@example(lines=[codecs.BOM_UTF8])  # a file holding only a byte-order mark has no rows
def test_jsonl_reader_never_raises_and_accounts_for_every_row(lines: list[bytes]):
    data = b"\n".join(lines)
    # blank lines are not rows; nor is a UTF-8 byte-order mark at the start of the file
    rows_in = sum(1 for line in data.removeprefix(codecs.BOM_UTF8).split(b"\n") if line.strip())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.jsonl"
        path.write_bytes(data)
        report = read_posts([path])
    row_errors = [e for e in report.errors if e.line is not None]  # the file's own problem (empty) has no row
    assert report.rows_seen == rows_in == len(report.posts) + len(row_errors)
    if rows_in == 0:  # a file with no post says so (issue 25), never passes in silence
        assert [e.message for e in report.errors if e.line is None] == ["empty file: no posts (not one JSON line)"]
    for post in report.posts:
        post.to_json().encode("utf-8")  # every kept post can be written as UTF-8


@settings(max_examples=100, deadline=None)
@given(body=st.binary(max_size=120))
def test_csv_reader_never_raises(body: bytes):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.csv"
        path.write_bytes(b"id,text,image\n" + body)
        report = read_posts([path])
    assert report.rows_seen == len(report.posts) + len(report.errors)
    assert all(p.line is not None for p in report.errors)


def test_no_heavy_imports():
    import subprocess
    import sys

    code = (
        "import sys, crisislens.runtime.readers, crisislens.runtime.cli.commands; "
        "print(sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
