"""Issue 25 in the app: it refreshes from a store another process writes, one display name per
class, a corrected post shown as the responder's label, and a usable 80x24 screen."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("textual", reason="the TUI needs the [tui] extra (textual)")

pytest.importorskip("pytest_textual_snapshot", reason="snapshot tests need the [dev] extra")

from textual.widgets._footer import FooterKey  # noqa: E402

from crisislens.runtime.labels import LABELS  # noqa: E402
from crisislens.runtime.schema import Post, Prediction  # noqa: E402
from crisislens.runtime.store import TriageStore  # noqa: E402
from crisislens.runtime.store.review import ReviewFilter  # noqa: E402
from crisislens.tui import theme  # noqa: E402
from crisislens.tui.app import CrisisLensApp  # noqa: E402
from crisislens.tui.screens.help import legend  # noqa: E402
from crisislens.tui.screens.label_picker import LabelPicker  # noqa: E402
from crisislens.tui.screens.triage import TriageScreen  # noqa: E402
from crisislens.tui.table import triage_table  # noqa: E402
from crisislens.tui.widgets.post_detail import headline, model_line  # noqa: E402
from crisislens.tui.widgets.post_list import class_cell, conf_cell  # noqa: E402
from crisislens.tui.widgets.prob_bars import probability_bars  # noqa: E402
from tests.tui_fixtures import build_store, probabilities  # noqa: E402

SMALL = (80, 24)


@pytest.fixture
def store_path(tmp_path):
    return build_store(tmp_path)


def make_app(path):
    return CrisisLensApp(path, image_renderer="halfblock")


# ----------------------------------------------------------------------------- 8. refresh


def test_the_app_shows_posts_another_process_writes(store_path, monkeypatch):
    monkeypatch.setattr(TriageScreen, "REFRESH_SECONDS", 0.2)

    async def go():
        app = make_app(store_path)
        async with app.run_test(size=(130, 40)) as pilot:
            await pilot.pause(0.3)
            assert len(app.screen.shown) == 8
            with TriageStore(store_path) as other:  # `crisislens triage` in another terminal
                post = Post(id="late", text="Two children missing after the flood")
                pred = Prediction(post_id="late", label="affected_individuals",
                                  probabilities=probabilities("affected_individuals", 0.8))
                other.write_batch([(post, pred)], "0" * 64, "fixture")
            await pilot.pause(0.8)
            assert "late" in [it.post_id for it in app.screen.shown]
            assert "9 of 9 posts" in str(app.screen.query_one("#filter-summary").render())

    asyncio.run(go())


# ----------------------------------------------------------------------------- 10. one name per class


def test_each_class_has_one_display_name_everywhere(store_path):
    assert not hasattr(theme, "SHORT_TITLES")
    titles = [label.title for label in LABELS]
    assert len(set(titles)) == len(titles) and max(map(len, titles)) <= 16
    with TriageStore(store_path) as store:
        items = store.items()
    bars = probability_bars(items[0].prediction.probabilities).plain
    table = triage_table(items)
    listed = {class_cell(it).plain[2:] for it in items}
    printed = {cell.plain for cell in table.columns[1]._cells}
    help_text = legend().plain
    for label in LABELS:
        assert label.title in bars and label.title in help_text
    assert listed <= set(titles) and printed <= set(titles)
    assert [b[2] for b in LabelPicker.BINDINGS[1:]] == titles
    assert ReviewFilter(classes=frozenset({"not_humanitarian"})).describe() == ["class: Not humanitarian"]


# ----------------------------------------------------------------------------- 11. a corrected post


def test_a_corrected_post_shows_the_responders_label_with_the_models_probability_for_it(store_path):
    with TriageStore(store_path) as store:
        fixed = store.correct_label("p01", "infrastructure_and_utility_damage")  # the model said Affected 91%
    assert class_cell(fixed).plain.endswith("Damage")
    assert conf_cell(fixed).plain.strip() == "2%"  # the model's probability for Damage, not its 91%
    text = headline(fixed).plain
    assert "your label  Damage" in text and "model: 2% for it" in text
    assert "the model said Affected people at 91%" in text
    assert "91% confident" not in text
    assert "your label's severity" in legend().plain


# ----------------------------------------------------------------------------- 12. 80x24


def test_80x24_footer_bars_help_and_empty_filter(store_path):
    async def go():
        app = make_app(store_path)
        async with app.run_test(size=SMALL) as pilot:
            await pilot.pause(0.3)
            keys = {k.key_display or k.key: k for k in app.screen.query(FooterKey)}
            for key in ("r", "l", "f", "/", "c", "m", "e", "?", "q"):
                assert key in keys, key
                assert keys[key].region.right <= SMALL[0], key  # on screen, not cut off
            detail = app.screen.query_one("#detail")
            bars = app.screen.query_one("#probabilities")
            assert bars.region.height >= 5 and bars.region.bottom <= detail.region.bottom  # seen without scrolling
            await pilot.press("question_mark")
            await pilot.pause(0.2)
            box = app.screen.query_one("#help-box")
            assert box.has_focus and box.max_scroll_y > 0
            await pilot.press("end")
            await pilot.pause(0.2)
            assert box.scroll_y == box.max_scroll_y  # the keys reach the last line
            await pilot.press("escape")
            app.screen.set_filter(ReviewFilter(search="no such words"))
            await pilot.pause(0.2)
            empty = app.screen.query_one("#empty")
            assert empty.display and "No posts match the filter" in str(empty.render())

    asyncio.run(go())


def test_snapshot_80x24(store_path, snap_compare):
    assert snap_compare(make_app(store_path), terminal_size=SMALL)


def test_snapshot_80x24_help(store_path, snap_compare):
    assert snap_compare(make_app(store_path), press=["question_mark"], terminal_size=SMALL)


# ----------------------------------------------------------------------------- 13. latency


def test_the_latency_shown_says_it_is_a_batch_average(store_path):
    with TriageStore(store_path) as store:
        line = model_line(store.item("p01")).plain
    assert "ms/post, averaged over its batch" in line


# ----------------------------------------------------------------------------- 5. in the app


def test_the_apps_status_line_names_the_files_a_folder_skipped(tmp_path):
    from crisislens.runtime.readers import read_posts
    from crisislens.runtime.store import TriageResult
    from crisislens.runtime.store.watch import done_note

    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "posts.jsonl").write_text('{"id": "1", "text": "x"}\n')
    read = read_posts([tmp_path / "samples"])
    note = done_note(TriageResult("s", 0, 0, 0, 0, 0.0), read)
    assert note.startswith("done: 0 new, 0 error(s); 1 file(s) skipped, e.g. ")
    assert "posts.jsonl: ignored" in note
