"""Issue 25, "Field-ready": an install triages with the default model from any folder, no post is
dropped silently, a run says why, the app refreshes and fits 80x24. The runtime tests run the
shipped bundle (a second a run); the wheel install is in tests/test_install.py."""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from crisislens.runtime.cli import build_parser, main
from crisislens.runtime.labels import LABELS
from crisislens.runtime.settings import DEFAULT_BUNDLE, Settings, SettingsError
from crisislens.runtime.store import StoreError, TriageStore, export_results
from crisislens.runtime.store.review import select
from tests.tui_fixtures import build_store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory outside the checkout, with no CRISISLENS_* variable set."""
    for name in ("CRISISLENS_BUNDLE", "CRISISLENS_STORE"):
        monkeypatch.delenv(name, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def folder(path: Path, posts: dict[str, str], photos: tuple[str, ...] = ()) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for pid, text in posts.items():
        (path / f"{pid}.txt").write_text(text, encoding="utf-8")
    for pid in photos:
        Image.new("RGB", (64, 48), (120, 90, 60)).save(path / f"{pid}.jpg")
    return path


def stored(store: Path) -> dict[str, str | None]:
    with sqlite3.connect(store) as db:
        return dict(db.execute("SELECT post_id, text FROM predictions"))


# ----------------------------------------------------------------------------- 1. the default bundle


def test_the_bundle_resolves_flag_then_variable_then_the_installed_default(tmp_path):
    assert (DEFAULT_BUNDLE / "manifest.json").is_file()  # in the checkout: models/; installed: crisislens/models/
    other = tmp_path / "other"
    shutil.copytree(DEFAULT_BUNDLE, other, ignore=shutil.ignore_patterns("*.onnx"))
    env = Settings.from_env({"CRISISLENS_BUNDLE": str(other)})
    assert Settings.from_env({}).bundle_dir() == DEFAULT_BUNDLE
    assert env.bundle_dir() == other
    assert env.bundle_dir(DEFAULT_BUNDLE) == DEFAULT_BUNDLE
    with pytest.raises(SettingsError, match=r"nowhere: no model bundle .*from \$CRISISLENS_BUNDLE"):
        Settings.from_env({"CRISISLENS_BUNDLE": "nowhere"}).bundle_dir()


def test_every_command_that_runs_a_bundle_defaults_to_the_installed_one():
    parser = build_parser()
    commands = {"triage": ["triage", "x"], "tui": ["tui", "x"], "eval": ["eval", "--input", "x"], "bench": ["bench"]}
    for name, argv in commands.items():
        args = parser.parse_args(argv)
        assert args.bundle is None, name  # None: Settings.bundle_dir picks flag > $CRISISLENS_BUNDLE > installed


def test_the_wheel_carries_the_default_bundle():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    tool = project["tool"]["setuptools"]
    assert tool["package-dir"]["crisislens.models"] == "models"
    assert "crisislens.models" in tool["packages"]
    assert tool["package-data"]["crisislens.models"] == ["crisislens-student/*"]


def test_triage_from_another_folder_needs_no_bundle(elsewhere, capsys):
    posts = folder(elsewhere / "posts", {"p01": "Family trapped on the roof, send a boat", "p02": "Bridge collapsed"})
    assert main(["triage", "posts", "--quiet"]) == 0
    assert set(stored(elsewhere / "posts.triage.sqlite")) == {"p01", "p02"}
    assert "posts.triage.sqlite" in capsys.readouterr().out
    assert posts.is_dir()


# ----------------------------------------------------------------------------- 2. the default store


def test_the_default_store_is_named_after_the_input_and_kept_beside_it(elsewhere, tmp_path, capsys):
    own = folder(elsewhere / "flood", {"u1": "Water in the streets of the old town"})
    samples = folder(tmp_path / "samples", {"s1": "Volunteers needed at the shelter"})
    assert main(["triage", str(own)]) == 0
    assert main(["triage", str(samples)]) == 0
    err = capsys.readouterr().err
    assert "results go to flood.triage.sqlite" in err and f"results go to {tmp_path / 'samples.triage.sqlite'}" in err
    assert set(stored(elsewhere / "flood.triage.sqlite")) == {"u1"}  # two incidents, two stores
    assert set(stored(tmp_path / "samples.triage.sqlite")) == {"s1"}
    assert not (elsewhere / "triage.sqlite").exists()
    settings = Settings.from_env({"CRISISLENS_STORE": "/tmp/x.sqlite"})
    assert settings.store_for(["a.jsonl"]) == Path("/tmp/x.sqlite")
    assert settings.store_for(["a.jsonl"], "mine.sqlite") == Path("mine.sqlite")
    assert Settings.from_env({}).store_for([elsewhere / "flood.jsonl"]) == Path("flood.triage.sqlite")


# ----------------------------------------------------------------------------- 3. one flag, --version, help


def test_store_is_the_flag_everywhere_and_out_its_old_name(elsewhere):
    parser = build_parser()
    assert parser.parse_args(["triage", "x", "--store", "s.sqlite"]).store == Path("s.sqlite")
    assert parser.parse_args(["triage", "x", "--out", "s.sqlite"]).store == Path("s.sqlite")
    assert parser.parse_args(["tui", "x", "--store", "s.sqlite"]).store == Path("s.sqlite")


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.startswith("crisislens ")


def _options_without_help(parser: argparse.ArgumentParser, path: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += _options_without_help(sub, f"{path} {name}")
        elif not action.help:
            missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    return missing


def test_every_option_has_help_and_internal_commands_stay_out_of_it():
    parser = build_parser()
    # distill's --seed is the lead's to document (distill/ is theirs); every other option has help
    missing = [m for m in _options_without_help(parser, "crisislens") if not m.startswith("crisislens distill")]
    assert missing == []
    assert "bench-row" not in parser.format_help()
    assert parser.parse_args(["bench-row", "{}"]).spec == "{}"  # hidden, still callable by the bench


# ----------------------------------------------------------------------------- 4. a clashing id is not swallowed


def test_a_different_post_with_a_stored_id_is_triaged_not_skipped(elsewhere, capsys):
    folder(elsewhere / "a", {"p01": "Family of four trapped on the roof"})
    folder(elsewhere / "b", {"p01": "Food kits donated at the town hall"})
    assert main(["triage", "a", "--store", "one.sqlite", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["triage", "b", "--store", "one.sqlite", "--quiet"]) == 0
    out = capsys.readouterr()
    assert stored(elsewhere / "one.sqlite") == {
        "p01": "Family of four trapped on the roof",
        "p01#2": "Food kits donated at the town hall",
    }
    assert "stored as p01#2" in out.err and "1 predicted" in out.out
    assert main(["triage", "b", "--store", "one.sqlite", "--quiet"]) == 0  # a resume: nothing new
    assert "0 predicted" in capsys.readouterr().out and len(stored(elsewhere / "one.sqlite")) == 2


# ----------------------------------------------------------------------------- 5, 6. say why


def test_triage_prints_the_reasons_not_only_a_count(elsewhere, capsys):
    (elsewhere / "bad.csv").write_text("id,body\n1,hello\n", encoding="utf-8")
    folder(elsewhere / "ok", {"p01": "Road closed by the landslide"})
    assert main(["triage", "ok", "missing.jsonl", "bad.csv", "--store", "s.sqlite", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "error: missing.jsonl: no such file or folder" in err
    assert "error: bad.csv:1: header has no text or image column" in err


def test_a_folder_whose_files_are_all_skipped_says_so(elsewhere, capsys):
    shutil.copytree(REPO / "samples", elsewhere / "samples", ignore=shutil.ignore_patterns("images"))
    assert main(["triage", "samples", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "skipped: samples/posts.jsonl: ignored: not a .txt or image file; pass it as an input of its own" in err
    assert "no post read from the inputs" in err


def test_an_empty_jsonl_is_an_error_for_triage_and_validate(elsewhere, capsys):
    (elsewhere / "empty.jsonl").write_text("\n", encoding="utf-8")
    assert main(["validate", "empty.jsonl"]) == 1
    assert "empty.jsonl: empty file: no posts" in capsys.readouterr().out
    assert main(["triage", "empty.jsonl", "--quiet"]) == 1
    assert "error: empty.jsonl: empty file: no posts" in capsys.readouterr().err


def test_errors_of_earlier_runs_are_not_printed_as_new(elsewhere, capsys):
    folder(elsewhere / "ok", {"p01": "Road closed by the landslide"})
    assert main(["triage", "ok", "gone.jsonl", "--store", "s.sqlite", "--quiet"]) == 1
    capsys.readouterr()
    assert main(["triage", "ok", "--store", "s.sqlite", "--quiet"]) == 0  # the store still holds gone.jsonl's error
    assert "gone.jsonl" not in capsys.readouterr().err
    assert main(["tui", "s.sqlite", "--print"]) == 0
    err = capsys.readouterr().err
    assert "gone.jsonl" not in err and "1 input problem(s) stored by earlier runs" in err
    assert main(["triage", "ok", "gone.jsonl", "--store", "s.sqlite", "--quiet"]) == 1
    assert "gone.jsonl: no such file or folder  (also met by an earlier run)" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 7. a late photo


def test_a_photo_that_arrives_after_its_text_is_used(elsewhere):
    from crisislens.runtime.bundle import load_bundle
    from crisislens.runtime.engine import Engine
    from crisislens.runtime.readers import read_posts
    from crisislens.runtime.store import triage

    engine = Engine(load_bundle(DEFAULT_BUNDLE))
    incoming = folder(elsewhere / "incoming", {"p03": "Houses flooded near the river", "p04": "Stay safe"})
    with TriageStore(elsewhere / "s.sqlite") as store:
        first = triage(engine, read_posts([incoming]).posts, store, progress=False)
        assert first.predicted == 2 and store.item("p03").image is None
        folder(incoming, {}, photos=("p03",))  # the sync tool delivers the photo later
        again = triage(engine, read_posts([incoming]).posts, store, progress=False)
        assert (again.predicted, again.skipped_done) == (1, 1)
        p03 = store.item("p03")
        assert p03.image and p03.has_image and store.count() == 2


def test_watch_mode_re_triages_a_post_when_its_photo_lands(elsewhere):
    import threading

    from crisislens.runtime.store.watch import TriageJob

    incoming = folder(elsewhere / "incoming", {"p03": "Houses flooded near the river"})
    store = elsewhere / "live.sqlite"
    job = TriageJob(DEFAULT_BUNDLE, [incoming], store, watch=True, interval=0.1, settle=0.3)
    stop = threading.Event()
    worker = threading.Thread(target=job.run, args=(stop, lambda *a: None))
    worker.start()
    try:
        _wait(lambda: _has(store, "p03"))
        folder(incoming, {}, photos=("p03",))
        _wait(lambda: _photo_used(store, "p03"))
    finally:
        stop.set()
        worker.join(10)


def test_watch_mode_does_not_read_a_photo_while_it_is_being_written(elsewhere):
    import io
    import threading
    import time

    from crisislens.runtime.store.watch import TriageJob

    incoming = folder(elsewhere / "incoming", {})
    store = elsewhere / "live.sqlite"
    job = TriageJob(DEFAULT_BUNDLE, [incoming], store, watch=True, interval=0.05, settle=0.5)
    stop = threading.Event()
    worker = threading.Thread(target=job.run, args=(stop, lambda *a: None))
    worker.start()
    try:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (120, 90, 60)).save(buffer, "JPEG")
        photo = buffer.getvalue()
        (incoming / "p05.txt").write_text("Roof torn off the school", encoding="utf-8")
        with (incoming / "p05.jpg").open("wb") as f:  # a slow sync: a chunk every 0.1 s
            for start in range(0, len(photo), max(1, len(photo) // 12)):
                f.write(photo[start : start + max(1, len(photo) // 12)])
                f.flush()
                time.sleep(0.1)
                assert not _has(store, "p05")  # nothing is read while the folder keeps changing
        _wait(lambda: _photo_used(store, "p05"))
        with TriageStore(store) as s:
            assert not s.item("p05").prediction.input_warnings  # the whole photo, not a torn one
    finally:
        stop.set()
        worker.join(10)


def _wait(condition, seconds: float = 30.0) -> None:
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def _items(store: Path) -> list:
    """The store's items, or none while the job is still creating it (two first opens of one store
    race on its column migrations)."""
    if not store.exists():
        return []
    try:
        with TriageStore(store) as s:
            return s.items()
    except StoreError:
        return []


def _has(store: Path, pid: str) -> bool:
    return any(it.post_id == pid for it in _items(store))


def _photo_used(store: Path, pid: str) -> bool:
    return any(it.post_id == pid and it.has_image for it in _items(store))


# ----------------------------------------------------------------------------- 13. hand-off files


def test_export_results_is_in_list_order_with_rank_id_and_priority(tmp_path):
    path = build_store(tmp_path)
    with TriageStore(path) as store:
        export_results(store, tmp_path / "out.csv")
        listed = [it.post_id for it in select(store.items())]
    rows = list(csv.DictReader((tmp_path / "out.csv").open(encoding="utf-8")))
    assert [r["post_id"] for r in rows] == listed
    assert [r["rank"] for r in rows] == [str(i) for i in range(1, len(rows) + 1)]
    priorities = [float(r["priority"]) for r in rows]
    assert priorities == sorted(priorities, reverse=True)
    assert {r["label"] for r in rows} <= {label.name for label in LABELS}  # machine names in machine output
    with TriageStore(path) as store:
        export_results(store, tmp_path / "out.jsonl")
    first = json.loads((tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["rank"] == 1 and first["post_id"] == listed[0] and "priority" in first


def test_print_follows_the_terminal_width(tmp_path, capsys, monkeypatch):
    pytest.importorskip("textual")
    path = build_store(tmp_path)
    for width in (80, 200):
        monkeypatch.setenv("COLUMNS", str(width))
        assert main(["tui", str(path), "--print"]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert max(len(line) for line in lines) == width


# ----------------------------------------------------------------------------- 9. the measurement


def test_score_counts_urgent_posts_in_the_first_tenth_under_both_rules(tmp_path, capsys):
    """`crisislens eval score` says how many affected_individuals posts land in the first 10% of the
    list: by priority (expected severity) and by the earlier rule (severity x top confidence)."""
    from crisislens.evaluation.metrics.ranking import urgent_at_top

    donation = {"rescue_volunteering_or_donation_effort": 0.95, "other_relevant_information": 0.05}
    unsure = {"affected_individuals": 0.45, "rescue_volunteering_or_donation_effort": 0.35, "not_humanitarian": 0.2}
    chatter = {"not_humanitarian": 0.9, "other_relevant_information": 0.1}
    probs = [donation, unsure] + [chatter] * 8
    gold = ["rescue_volunteering_or_donation_effort", "affected_individuals"] + ["not_humanitarian"] * 8
    full = [{name: p.get(name, 0.0) for name in (label.name for label in LABELS)} for p in probs]
    ids = [f"p{i:02d}" for i in range(10)]
    counted = urgent_at_top(gold, full, ids)
    assert (counted.top, counted.in_class, counted.by_expected_severity, counted.by_top_class_severity) == (1, 1, 1, 0)
    path = tmp_path / "preds.jsonl"
    path.write_text(
        "".join(
            json.dumps({"post_id": i, "gold_label": g, "label": max(p, key=p.get), "probabilities": p}) + "\n"
            for i, g, p in zip(ids, gold, full)
        )
    )
    assert main(["eval", "score", str(path)]) == 0
    assert "1 of 1 affected_individuals posts in the first 10% (1 of 10) by priority; 0 by severity" in (
        capsys.readouterr().out
    )
