"""Hostile and broken input (issue 26): each test reproduces one defect an attacker or an unlucky
responder met: gigabyte photos from tiny files, non-UTF-8 names, leaked files, formula injection,
stray quotes, terminal escapes, FIFOs, a full disk, read-only stores, foreign image formats."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from crisislens.runtime.cli import EXIT_PROBLEMS, main
from crisislens.runtime.preprocessing import ImageConfig, ImageError, check_image, load_image
from crisislens.runtime.readers import read_posts
from crisislens.runtime.store import StoreError, TriageStore, export_feedback, export_results

REPO = Path(__file__).resolve().parents[1]


def _png(path: Path, width: int, height: int) -> Path:
    Image.new("L", (width, height), 128).save(path, "PNG")
    return path


def _triage(inputs: list[Path], bundle: Path, store: Path, *extra: str) -> int:
    return main(["triage", *map(str, inputs), "--bundle", str(bundle), "--out", str(store), "--quiet", *extra])


# -- 1: a tiny file whose photo would take gigabytes -------------------------------------------


def test_extreme_aspect_ratio_is_refused_before_any_allocation(tmp_path: Path):
    thin = _png(tmp_path / "thin.png", 1, 200_000)  # 467 bytes; resized it would be 112 x 22,400,000
    assert thin.stat().st_size < 2_000
    for call in (check_image, load_image):
        with pytest.raises(ImageError, match="aspect ratio"):
            call(thin)


def test_extreme_photo_is_bounded_in_memory_in_a_separate_process(tmp_path: Path):
    """Under a 1.5 GB address-space limit the loader refuses the photo instead of dying."""
    _png(tmp_path / "thin.png", 1, 200_000)
    _png(tmp_path / "wide.png", 2_000_000, 1)
    script = textwrap.dedent(
        """
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
        from crisislens.runtime.preprocessing import ImageError, load_image
        for name in ("thin.png", "wide.png"):
            try:
                load_image(sys.argv[1] + "/" + name)
            except ImageError as exc:
                print("refused", exc.problem)
        """
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("refused") == 2


def test_extreme_photo_is_left_out_the_post_triaged_from_text_and_validate_flags_it(tiny_bundle, tmp_path, capsys):
    _png(tmp_path / "thin.png", 1, 200_000)
    posts = tmp_path / "p.jsonl"
    posts.write_text(json.dumps({"id": "a", "text": "bridge down on route 9", "image": "thin.png"}) + "\n")
    assert main(["validate", str(posts)]) == 0
    assert "aspect ratio" in capsys.readouterr().out
    store = tmp_path / "t.sqlite"
    assert _triage([posts], tiny_bundle, store) == 0
    with TriageStore(store) as s:
        (row,) = s.rows()
    assert any("aspect ratio" in w for w in row["prediction"]["input_warnings"])


# -- 2: non-UTF-8 names -------------------------------------------------------------------------


def test_non_utf8_file_and_folder_names_do_not_abort_the_run(tiny_bundle, tmp_path):
    folder = tmp_path / os.fsdecode(b"posts\xff")
    folder.mkdir()
    (folder / "a.txt").write_text("bridge down on route 9")
    (folder / os.fsdecode(b"b\xfe.txt")).write_text("shelter open")
    jsonl = tmp_path / os.fsdecode(b"feed\xff.jsonl")
    jsonl.write_text(json.dumps({"id": "c", "text": "flood water rising", "image": os.fsdecode(b"ph\xff.jpg")}) + "\n")
    Image.new("RGB", (20, 20), (90, 90, 200)).save(tmp_path / os.fsdecode(b"ph\xff.jpg"), "JPEG")
    store = tmp_path / "t.sqlite"
    assert _triage([folder, jsonl], tiny_bundle, store) == EXIT_PROBLEMS  # b's name is an error, the rest triaged
    with TriageStore(store) as s:
        assert sorted(r["post_id"] for r in s.rows()) == ["a", "c"]
        (error,) = s.errors()
    assert "not valid UTF-8" in error["message"]


# -- 4: export-feedback copies only images inside the allowed roots ----------------------------


def test_export_feedback_copies_no_file_that_is_not_an_image(tiny_bundle, tmp_path):
    root = tmp_path / "root"
    (root / ".ssh").mkdir(parents=True)
    (root / ".ssh" / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    Image.new("RGB", (20, 20), (90, 90, 200)).save(root / "ok.jpg", "JPEG")
    posts = tmp_path / "p.jsonl"
    posts.write_text(
        json.dumps({"id": "key", "text": "bridge down", "image": ".ssh/id_rsa"}) + "\n"
        + json.dumps({"id": "ok", "text": "shelter open", "image": "ok.jpg"}) + "\n"
        + json.dumps({"id": "edited", "text": "road closed", "image": "ok.jpg"}) + "\n"
    )
    store = tmp_path / "t.sqlite"
    _triage([posts], tiny_bundle, store, "--image-root", str(root))
    outside = tmp_path / "outside.jpg"
    Image.new("RGB", (20, 20)).save(outside, "JPEG")
    with TriageStore(store) as s:
        s.db.execute("UPDATE predictions SET image = ? WHERE post_id = 'edited'", (str(outside),))  # an edited store
        for pid in ("key", "ok", "edited"):
            s.correct_label(pid, "infrastructure_and_utility_damage")
        assert export_feedback(s, tmp_path / "out" / "fb.jsonl") == 3  # the folder did not exist (item 15)
    copied = list((tmp_path / "out" / "fb-images").iterdir())
    assert [p.name.split("_", 1)[1] for p in copied] == ["ok.jpg"]
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "fb.jsonl").read_text().splitlines())}
    assert records["key"]["image"] is None and records["edited"]["image"] is None
    assert "not copied" in records["key"]["photo_not_copied"]


# -- 5: formula injection -----------------------------------------------------------------------

PAYLOADS = ['=HYPERLINK("http://x","click")', "+1+1", "-2+3", "@SUM(A1)", "\tinjected", "\rinjected"]


def test_csv_export_neutralises_formulas(tiny_bundle, tmp_path):
    posts = tmp_path / "p.jsonl"
    rows = [{"id": p if p[0] in "=+-@" else f"t{i}", "text": p + " flood"} for i, p in enumerate(PAYLOADS)]
    posts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = tmp_path / "t.sqlite"
    _triage([posts], tiny_bundle, store)
    with TriageStore(store) as s:
        export_results(s, tmp_path / "r.csv")
    with (tmp_path / "r.csv").open(newline="") as f:
        written = list(csv.DictReader(f))
    assert len(written) == len(PAYLOADS)
    for row in written:
        for value in row.values():
            assert not value or value[0] not in "=+-@\t\r", row
    assert {r["post_id"] for r in written} >= {"'" + p for p in PAYLOADS[:4]}
    assert {r["text"] for r in written} == {"'" + p + " flood" for p in PAYLOADS}


# -- 6: one stray quote -------------------------------------------------------------------------


def test_a_stray_quote_in_a_tsv_swallows_no_rows(tmp_path: Path):
    lines = ["id\ttext", '1\t"Boats are taking people off roofs', *(f"{i}\tline {i}" for i in range(2, 40)),
             '40\tsays "hi"']
    (tmp_path / "p.tsv").write_text("\n".join(lines) + "\n")
    report = read_posts([tmp_path / "p.tsv"])
    assert report.errors == []
    assert len(report.posts) == 40 and report.posts[0].text == '"Boats are taking people off roofs'


def test_a_stray_quote_in_a_csv_costs_one_row(tmp_path: Path):
    lines = ["id,text", '1,"never closed', *(f"{i},line {i}" for i in range(2, 40))]
    (tmp_path / "p.csv").write_text("\n".join(lines) + "\n")
    report = read_posts([tmp_path / "p.csv"])
    (error,) = report.errors
    assert error.line == 2
    assert [p.id for p in report.posts] == [str(i) for i in range(2, 40)]


def test_quoted_multiline_csv_fields_still_read(tmp_path: Path):
    (tmp_path / "p.csv").write_text('id,text\n1,"two\nlines"\n2,"a ""quoted"" word"\n3,plain\n')
    report = read_posts([tmp_path / "p.csv"])
    assert report.problems == []
    assert [p.text for p in report.posts] == ["two\nlines", 'a "quoted" word', "plain"]


# -- 7: terminal escapes on stderr --------------------------------------------------------------


def test_tui_print_escapes_input_strings_on_stderr(tiny_bundle, tmp_path, capsys):
    pytest.importorskip("textual")
    bad = tmp_path / "p\x1b]0;owned\x07.csv"
    bad.write_text("id,\x1b[2Jtext\x1b]52;c;ZXZpbA==\x07\n1,hello\n")
    good = tmp_path / "g.jsonl"
    good.write_text(json.dumps({"id": "g", "text": "bridge down"}) + "\n")
    main(["tui", str(good), str(bad), "--print", "--bundle", str(tiny_bundle), "--store", str(tmp_path / "t.sqlite")])
    captured = capsys.readouterr()
    assert "\x1b" not in captured.err and "\x07" not in captured.err
    assert "\\x1b]0;owned" in captured.err  # the problem is shown, escaped


# -- 8: FIFOs -----------------------------------------------------------------------------------


def test_a_fifo_in_a_folder_is_skipped_not_read(tmp_path: Path):
    folder = tmp_path / "posts"
    folder.mkdir()
    (folder / "a.txt").write_text("bridge down")
    os.mkfifo(folder / "b.txt")
    os.mkfifo(folder / "a.jpg")
    script = (
        "import sys; from crisislens.runtime.readers import read_posts; "
        "r = read_posts([sys.argv[1]], check_images=True); "
        "print([p.id for p in r.posts], [p.message for p in r.problems])"
    )
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "['a']" in done.stdout and "not a regular file" in done.stdout


def test_check_image_refuses_a_fifo(tmp_path: Path):
    os.mkfifo(tmp_path / "x.jpg")
    with pytest.raises(ImageError, match="not a regular file"):
        check_image(tmp_path / "x.jpg")


# -- 9: disk full, read-only store --------------------------------------------------------------


def test_disk_full_is_a_store_error_naming_the_cause(tmp_path: Path):
    from crisislens.runtime.schema import Post, Prediction

    with TriageStore(tmp_path / "t.sqlite") as s:
        s.db.execute("PRAGMA max_page_count = 8")  # SQLite's own "disk full", the real cause a full disk gives
        pred = Prediction.from_json(_prediction_json())
        posts = [(Post(id=f"p{i}", text="x" * 5_000), pred) for i in range(200)]
        with pytest.raises(StoreError, match="full"):
            s.write_batch(posts, "sha", "v")


def test_triage_on_a_full_disk_is_one_line_and_its_own_exit_code(tiny_bundle, tmp_path, capsys, monkeypatch):
    from crisislens.runtime.cli import EXIT_STORE

    posts = tmp_path / "p.jsonl"
    posts.write_text("".join(json.dumps({"id": f"p{i}", "text": "flood " * 500}) + "\n" for i in range(100)))
    original = TriageStore.__init__

    def small(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.db.execute("PRAGMA max_page_count = 12")

    monkeypatch.setattr(TriageStore, "__init__", small)
    code = _triage([posts], tiny_bundle, tmp_path / "t.sqlite")
    err = capsys.readouterr().err
    assert code == EXIT_STORE and "full" in err and "Traceback" not in err


def test_a_read_only_store_is_refused_before_the_model_loads(tiny_bundle, tmp_path, capsys, monkeypatch):
    from crisislens.runtime import engine as engine_module
    from crisislens.runtime.cli import EXIT_STORE

    store = tmp_path / "t.sqlite"
    TriageStore(store).close()
    posts = tmp_path / "p.jsonl"
    posts.write_text(json.dumps({"id": "a", "text": "bridge down"}) + "\n")

    def no_write(self) -> None:
        raise StoreError(f"{self.path}: cannot write the store (attempt to write a readonly database)")

    monkeypatch.setattr(TriageStore, "check_writable", no_write)
    monkeypatch.setattr(engine_module, "Engine", lambda *a, **k: pytest.fail("the model was loaded"))
    assert _triage([posts], tiny_bundle, store) == EXIT_STORE
    assert "readonly" in capsys.readouterr().err


# -- 10: read-only media ------------------------------------------------------------------------


def test_read_only_commands_open_the_store_read_only(tiny_bundle, tmp_path):
    posts = tmp_path / "p.jsonl"
    posts.write_text(json.dumps({"id": "a", "text": "bridge down"}) + "\n")
    store = tmp_path / "t.sqlite"
    _triage([posts], tiny_bundle, store)
    # As on a read-only medium: no WAL, no CREATE TABLE, no -wal/-shm files beside it.
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA journal_mode=DELETE")
    before = store.read_bytes()
    with TriageStore(store, readonly=True) as s:
        assert [r["post_id"] for r in s.rows()] == ["a"]
        with pytest.raises(StoreError):
            s.set_meta("x", 1)
    assert store.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("t.sqlite")) == ["t.sqlite"]
    assert main(["export-results", str(store), "--out", str(tmp_path / "r.jsonl")]) == 0
    assert store.read_bytes() == before
    if importlib.util.find_spec("textual") is not None:
        assert main(["tui", str(store), "--print"]) == 0
        assert store.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("t.sqlite")) == ["t.sqlite"]


# -- 12: only photo formats ---------------------------------------------------------------------


def test_only_photo_formats_are_opened(tmp_path: Path):
    eps = tmp_path / "x.jpg"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ImageError, match="not an image file"):
        check_image(eps)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PCX")
    (tmp_path / "y.jpg").write_bytes(buf.getvalue())
    with pytest.raises(ImageError, match="not an image file"):
        load_image(tmp_path / "y.jpg")
    with pytest.raises(ImageError, match="not an image file"):
        check_image(eps)
    for fmt in ("JPEG", "PNG", "GIF", "WEBP", "BMP"):
        Image.new("RGB", (8, 8)).save(tmp_path / f"ok.{fmt.lower()}", fmt)
        load_image(tmp_path / f"ok.{fmt.lower()}")


# -- 14: an image path that escapes its folder costs the photo, not the post --------------------


def test_an_escaping_image_path_keeps_the_text(tmp_path: Path):
    (tmp_path / "in").mkdir()
    posts = tmp_path / "in" / "p.jsonl"
    posts.write_text(
        json.dumps({"id": "a", "text": "bridge down", "image": "../escape.jpg"}) + "\n"
        + json.dumps({"id": "b", "image": "../escape.jpg"}) + "\n"
        + json.dumps({"id": "c", "text": "shelter open", "image": "/etc/passwd"}) + "\n"
    )
    report = read_posts([posts])
    assert [(p.id, p.image) for p in report.posts] == [("a", None), ("c", None)]
    assert [p.post_id for p in report.errors] == ["b"]
    assert {w.post_id for w in report.warnings} == {"a", "c"}
    assert all("read as text-only" in w.message for w in report.warnings)


# -- 15: cosmetic -------------------------------------------------------------------------------


def test_a_failed_export_names_the_file_and_leaves_nothing(tmp_path: Path, monkeypatch):
    from crisislens.runtime.files import atomic_open

    target = tmp_path / "out.csv"

    with pytest.raises(OSError, match="out.csv"):
        with atomic_open(target) as f:
            f.write("x")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_bundle_errors_print_lines_not_escaped_newlines(tmp_path, capsys):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{}")
    posts = tmp_path / "p.jsonl"
    posts.write_text(json.dumps({"id": "a", "text": "bridge down"}) + "\n")
    main(["triage", str(posts), "--bundle", str(tmp_path / "b"), "--out", str(tmp_path / "t.sqlite")])
    assert "\\n" not in capsys.readouterr().err


def test_exif_warnings_become_notes_not_stderr(tmp_path: Path, recwarn):
    import struct

    # An EXIF block whose description tag points past the data: Pillow warns while reading it.
    ifd = (struct.pack(">2sHI", b"MM", 42, 8) + struct.pack(">H", 2) + struct.pack(">HHII", 0x0112, 3, 1, 6 << 16)
           + struct.pack(">HHII", 0x010E, 2, 1000, 0x1000) + struct.pack(">I", 0))
    Image.new("RGB", (16, 16)).save(tmp_path / "x.jpg", "JPEG", exif=b"Exif\x00\x00" + ifd)
    _, notes = load_image(tmp_path / "x.jpg")
    assert [str(w.message) for w in recwarn if issubclass(w.category, UserWarning)] == []
    assert any("Skipping tag 270" in n for n in notes)


def test_sigterm_stops_a_triage_with_a_word(tiny_bundle, tmp_path):
    import signal
    import time

    posts = tmp_path / "p.jsonl"
    posts.write_text("".join(json.dumps({"id": f"p{i}", "text": "flood " * 50}) + "\n" for i in range(20_000)))
    store = tmp_path / "t.sqlite"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "crisislens"), "triage", str(posts), "--bundle", str(tiny_bundle), "--out", str(store),
         "--quiet", "--batch-size", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        time.sleep(0.5)
        if store.exists():
            with sqlite3.connect(store) as db:
                try:
                    if db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] > 0:
                        break
                except sqlite3.OperationalError:
                    pass
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert "terminated" in err and "Traceback" not in err


def _prediction_json() -> str:
    return json.dumps({"post_id": "p", "label": "not_humanitarian",
                       "probabilities": {"not_humanitarian": 0.9, "other_relevant_information": 0.1}})


# -- 3, 11: the app ---------------------------------------------------------------------------


def test_the_app_loads_photos_through_the_bounded_loader(tmp_path: Path):
    pytest.importorskip("textual")
    from crisislens.tui.widgets.image_view import load_photo

    bomb = tmp_path / "bomb.png"
    Image.new("1", (13_000, 13_000)).save(bomb, "PNG")  # 169 M pixels, a few hundred KB on disk
    with pytest.raises(ImageError, match="too large"):
        load_photo(bomb)
    thin = _png(tmp_path / "thin.png", 1, 200_000)
    with pytest.raises(ImageError, match="aspect ratio"):
        load_photo(thin)
    big = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (10, 200, 10)).save(big, "JPEG")
    photo = load_photo(big)
    assert max(photo.size) <= 2048 and photo.mode == "RGB"


def test_the_app_lays_out_a_bounded_part_of_a_huge_post():
    pytest.importorskip("textual")
    import time

    from crisislens.tui.widgets.rationale import MAX_SHOWN_CHARS, post_text

    text = "flood " * 2_000_000  # 12 MB
    started = time.perf_counter()
    shown = post_text(text, ())
    assert time.perf_counter() - started < 2.0
    assert len(shown.plain) < MAX_SHOWN_CHARS + 200
    assert f"{len(text):,} characters" in shown.plain


def test_the_app_decodes_a_large_photo_off_the_ui_thread(tmp_path: Path, monkeypatch):
    pytest.importorskip("textual")
    import asyncio
    import threading

    from textual.app import App

    from crisislens.tui.widgets import image_view
    from crisislens.tui.widgets.image_view import PatchImage

    big = tmp_path / "big.jpg"
    Image.new("RGB", (3000, 2000), (10, 200, 10)).save(big, "JPEG")  # 6 M pixels
    threads = []
    real = image_view.load_photo

    def spy(path):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(path)

    class One(App):
        def compose(self):
            yield PatchImage(renderer="halfblock", id="photo")

    async def go():
        app = One()
        async with app.run_test(size=(80, 30)) as pilot:
            view = app.query_one(PatchImage)
            assert view.show(str(big), None) == []
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert view._picture is not None
            assert max(view._picture.image.size) <= 2048

    monkeypatch.setattr(image_view, "load_photo", spy)
    asyncio.run(go())
    assert threads == [False]  # decoded once, not on the UI (main) thread
