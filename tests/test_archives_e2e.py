"""Each archive format end to end on the tiny bundle: `crisislens triage` into the store (with
where each post came from, and a repaired text's original), then `crisislens tui --print`, and
the detail pane's lines for a stored post."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crisislens.runtime.cli import main
from crisislens.runtime.store import TriageStore

ARCHIVES = Path(__file__).parent / "fixtures" / "archives"

CASES = {
    # name: (input, extra options, posts stored, rows recorded as errors, a post id, its platform / author,
    #        a word that `tui --print` shows at the start of a post's text)
    "twarc2": (
        "twarc2/flood-search.jsonl",
        [],
        4,
        1,
        "1768000000000000001",
        ("twitter", "@county_ems_demo"),
        "Bridge",
    ),
    "twarc2-flat": ("twarc2/flood-flat.jsonl", [], 2, 0, "1768000000000000012", ("twitter", "@relay_demo"), "Water"),
    "twitter-v1.1": (
        "twitter_v1/tweets.jsonl",
        [],
        3,
        1,
        "1768000000000000022",
        ("twitter", "@relay_demo"),
        "Shelter",
    ),
    "telegram": (
        "telegram/ChatExport_2024-03-15",
        [],
        5,
        1,
        "telegram:1000000001:3",
        ("telegram", "Millbrook Flood Updates (demo)"),
        "Route",
    ),
    "whatsapp": (
        "whatsapp/android",
        [],
        4,
        2,
        "whatsapp:Flood volunteers (demo):5",
        ("whatsapp", "+1 555 0100"),
        "Family",
    ),
    "columns": (
        "columns/field-reports.csv",
        ["--id-column", "report_no", "--text-column", "message", "--image-column", "picture"],
        3,
        0,
        "8",
        (None, None),
        "Culvert",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_archive_format_through_triage_into_the_store_and_tui_print(name, tiny_bundle, tmp_path, capsys):
    from crisislens.tui.widgets.post_detail import model_line

    rel, options, n_posts, n_errors, post_id, (platform, author), word = CASES[name]
    store = tmp_path / "t.sqlite"
    code = main(["triage", str(ARCHIVES / rel), "--bundle", str(tiny_bundle), "--out", str(store), "--quiet", *options])
    assert code == (1 if n_errors else 0)
    with TriageStore(store) as s:
        items = {it.post_id: it for it in s.items()}
        assert len(items) == n_posts and len(s.errors()) == n_errors
        item = items[post_id]
        assert (item.platform, item.author) == (platform, author)
        assert item.origin and Path(rel).name in item.origin
        pane = model_line(item).plain
        assert item.origin in pane and (author is None or author in pane)
    capsys.readouterr()
    assert main(["tui", str(store), "--print"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"\b{n_posts} posts\b", out) and word in out


def test_a_repaired_text_is_shown_repaired_and_stored_as_read(tiny_bundle, tmp_path, capsys):
    from crisislens.tui.widgets.post_detail import model_line

    store = tmp_path / "t.sqlite"
    main(["triage", str(ARCHIVES / "twitter_v1/tweets.jsonl"), "--bundle", str(tiny_bundle), "--out", str(store)])
    with TriageStore(store) as s:
        item = s.item("1768000000000000023")
    assert item.text == "It’s still raining in Magaña county, roads closed"
    assert item.original_text == "Itâ€™s still raining in MagaÃ±a county, roads closed"
    assert any("text repaired" in w for w in item.prediction.input_warnings)
    assert "text repaired" in model_line(item).plain
    capsys.readouterr()
    main(["tui", str(store), "--print"])
    out = capsys.readouterr().out
    assert "It’s still" in out and "â€" not in out


def test_a_store_from_before_the_origin_columns_still_opens_read_only(tmp_path):
    """A read-only open runs no migration: the columns on where a post came from read as empty."""
    from crisislens.runtime.labels import LABEL_NAMES
    from crisislens.runtime.schema import Prediction

    store = tmp_path / "old.sqlite"
    pred = Prediction(post_id="p1", label=LABEL_NAMES[0], probabilities={LABEL_NAMES[0]: 1.0})
    with TriageStore(store) as s:
        for column in ("origin", "platform", "author", "original_text"):
            s.db.execute(f"ALTER TABLE predictions DROP COLUMN {column}")
        s.db.execute(
            "INSERT INTO predictions(post_id, label, confidence, prediction, bundle_sha256, variant, stored_at) "
            "VALUES ('p1', ?, 1.0, ?, 'sha', 'v', 'now')",
            (pred.label, pred.to_json()),
        )
    with TriageStore(store, readonly=True) as s:
        [item] = s.items()
        assert item.post_id == "p1" and (item.origin, item.platform, item.author, item.original_text) == (None,) * 4


def test_tui_triages_a_table_with_its_own_column_names(tiny_bundle, tmp_path, capsys):
    store = tmp_path / "t.sqlite"
    args = ["tui", str(ARCHIVES / "columns/field-reports.csv"), "--bundle", str(tiny_bundle), "--store", str(store)]
    columns = ["--id-column", "report_no", "--text-column", "message", "--image-column", "picture"]
    assert main([*args, "--print", *columns]) == 0
    assert "Culvert" in capsys.readouterr().out
    with TriageStore(store) as s:
        assert sorted(it.post_id for it in s.items()) == ["7", "8", "9"]
