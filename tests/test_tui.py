"""The field TUI, driven with Textual's Pilot: navigation, filters, search, review actions that
persist in the store, export, help, command palette, live triage, and untrusted text."""

from __future__ import annotations

import asyncio
import csv
import json
import time

import pytest

pytest.importorskip("textual", reason="the TUI needs the [tui] extra (textual)")

from crisislens.runtime.store.review import select  # noqa: E402
from crisislens.runtime.store import TriageStore  # noqa: E402
from crisislens.tui.app import CrisisLensApp  # noqa: E402
from crisislens.tui.safe import inert, one_line  # noqa: E402
from crisislens.tui.screens.help import HelpScreen  # noqa: E402
from crisislens.tui.screens.label_picker import LabelPicker  # noqa: E402
from crisislens.tui.widgets.rationale import align, rationale_text  # noqa: E402
from tests.tui_fixtures import INJECTION, POSTS, build_store  # noqa: E402

SIZE = (130, 40)


@pytest.fixture
def store_path(tmp_path):
    return build_store(tmp_path)


def make_app(path, **kwargs):
    return CrisisLensApp(path, image_renderer="halfblock", **kwargs)


def run(coro):
    return asyncio.run(coro)


def listed(app) -> list[str]:
    return list(app.screen.query_one("#posts").post_ids)


def current(app) -> str | None:
    return app.screen.query_one("#posts").current_id


def test_navigation_follows_priority_order(store_path):
    async def go():
        app = make_app(store_path)
        async with app.run_test(size=SIZE) as pilot:
            with TriageStore(store_path) as s:
                order = [it.post_id for it in select(s.items())]
            assert listed(app) == order
            assert current(app) == order[0]
            await pilot.press("j", "j")
            assert current(app) == order[2]
            await pilot.press("k")
            assert current(app) == order[1]
            await pilot.press("down", "down", "up")
            assert current(app) == order[2]
            headline = app.screen.query_one("#post-text").render()
            assert "trapped" not in str(headline)  # the detail pane follows the cursor
    run(go())


def test_filter_keys_cycle_and_clear(store_path):
    async def go():
        app = make_app(store_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("c")  # first class: affected people
            assert set(listed(app)) == {"p01", "p08"}
            await pilot.press("c")
            assert set(listed(app)) == {"p02", "p07"}
            await pilot.press("x", "m", "m", "m")  # confidence >= 0.9
            assert set(listed(app)) == {"p01", "p05"}
            await pilot.press("x", "i")  # with photo
            assert set(listed(app)) == {p[0] for p in POSTS if p[4]}
            await pilot.press("i")  # without
            assert set(listed(app)) == {p[0] for p in POSTS if not p[4]}
            await pilot.press("x", "s")  # sort by confidence
            assert listed(app)[0] == "p05"
            summary = str(app.screen.query_one("#filter-summary").render())
            assert "8 of 8 posts" in summary and "sort: confidence" in summary
    run(go())


def test_search_filters_text_and_escape_clears(store_path):
    async def go():
        app = make_app(store_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("slash", *"water")
            await pilot.pause(0.3)  # the list re-filters 0.15 s after the last key
            assert set(listed(app)) == {"p01", "p03"}
            await pilot.press("enter")  # keep the search, back to the list
            assert app.focused.id == "posts"
            await pilot.press("j")  # a key for the list again, not typed into the box
            assert set(listed(app)) == {"p01", "p03"}
            await pilot.press("slash", "escape")
            assert len(listed(app)) == len(POSTS)
            await pilot.press("slash", *"zzz", "enter")  # Enter applies at once, without waiting
            assert listed(app) == []
    run(go())


def test_a_large_store_draws_rows_in_chunks_as_the_cursor_moves(tmp_path):
    from crisislens.runtime.schema import Post, Prediction
    from crisislens.tui.widgets.post_list import PostList
    from tests.tui_fixtures import probabilities

    n = PostList.CHUNK * 2 + 50
    items = [(Post(id=f"x{i:04d}", text=f"post {i}"),
              Prediction(post_id=f"x{i:04d}", label="not_humanitarian", probabilities=probabilities("not_humanitarian", 0.9)))
             for i in range(n)]
    with TriageStore(tmp_path / "big.sqlite") as s:
        s.write_batch(items, "0" * 64, "big")

    async def go():
        app = make_app(tmp_path / "big.sqlite")
        async with app.run_test(size=SIZE) as pilot:
            table = app.screen.query_one("#posts")
            assert len(table.all_ids) == n and len(listed(app)) == PostList.CHUNK and table.row_count == PostList.CHUNK
            table.move_cursor(row=PostList.CHUNK - 1)
            await pilot.pause()
            assert len(listed(app)) == 2 * PostList.CHUNK  # the next chunk came before the cursor ran out
            table.move_to(table.all_ids[-1])
            await pilot.pause()
            assert current(app) == table.all_ids[-1] and table.row_count == n
            await pilot.press("r")  # review the last post: the one-row redraw path
            assert TriageStore(tmp_path / "big.sqlite").item(table.all_ids[-1]).reviewed
    run(go())


def test_correction_is_saved_in_the_store_with_time(store_path):
    async def go():
        app = make_app(store_path)
        async with app.run_test(size=SIZE) as pilot:
            first = current(app)
            await pilot.press("l")
            assert isinstance(app.screen, LabelPicker)
            await pilot.press("3")  # rescue / volunteering / donations
            assert not isinstance(app.screen, LabelPicker)
            assert current(app) != first  # moved on to the next post
            await pilot.press("l", "escape")  # cancel changes nothing
        return first
    first = run(go())
    with TriageStore(store_path) as s:
        item = s.item(first)
        assert item.review_label == "rescue_volunteering_or_donation_effort" and item.reviewed
        [fb] = s.feedback()
        assert (fb.post_id, fb.action, fb.label, fb.model_label) == (first, "label", item.review_label, item.label)
        assert fb.at.endswith("Z")


def test_reviewed_and_flag_toggle_and_persist(store_path):
    async def go():
        app = make_app(store_path)
        async with app.run_test(size=SIZE) as pilot:
            order = listed(app)
            await pilot.press("r")  # reviewed, moves on
            assert current(app) == order[1]
            await pilot.press("f")  # flag the second
            await pilot.press("u")  # unreviewed only
            assert order[0] not in listed(app) and order[1] in listed(app)
        return order
    order = run(go())
    with TriageStore(store_path) as s:
        assert s.item(order[0]).reviewed and s.item(order[1]).flagged and not s.item(order[1]).reviewed


def test_export_writes_the_filtered_view(store_path, tmp_path):
    out = tmp_path / "shown.csv"

    async def go():
        app = make_app(store_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("i")  # with photo
            shown = listed(app)
            await pilot.press("e")
            box = app.screen.query_one("#export-path")
            box.value = str(tmp_path / "bad.txt")
            await pilot.press("enter")
            assert "end the name in .csv or .jsonl" in str(app.screen.query_one("#export-error").render())
            box.value = str(out)
            await pilot.press("enter")
            await pilot.pause()
            return shown
    shown = run(go())
    with out.open(encoding="utf-8", newline="") as f:
        assert [r["post_id"] for r in csv.DictReader(f)] == shown
    assert not (tmp_path / "bad.txt").exists()


def test_help_screen_and_command_palette(store_path):
    async def go():
        app = make_app(store_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press("ctrl+p")
            await pilot.press(*"Show only: Rescue")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await pilot.pause()
            assert listed(app) == ["p03"]
            await pilot.press("q")
            assert not app.is_running
    run(go())


# ----------------------------------------------------------------------------- untrusted text


def test_markup_and_escape_codes_in_a_tweet_are_shown_not_obeyed(store_path):
    shown = inert(INJECTION).plain
    assert "[bold red]PWNED[/]" in shown and "[link=http://x]click[/link]" in shown
    assert "\x1b" not in shown and "␛[2J" in shown
    assert "⟨ZWSP⟩" in shown and "⟨RLO⟩" in shown and "⟨PDF⟩" in shown
    assert not inert(INJECTION).spans or all(s.style == "dim italic" for s in inert(INJECTION).spans)
    assert "\n" not in one_line("a\nb").plain and "⏎" in one_line("a\nb").plain
    assert one_line(INJECTION, 30).cell_len <= 30  # cut as shown, placeholders included
    highlighted = rationale_text(INJECTION, [])
    assert highlighted.plain == shown

    async def go():
        app = make_app(store_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("slash", *"PWNED", "enter")
            assert listed(app) == ["p06"]
            svg = app.export_screenshot()
            body = str(app.screen.query_one("#post-text").render())
            assert "[bold red]PWNED[/]" in body and "\x1b" not in svg and "\u202e" not in svg
            assert "PWNED" in svg
    run(go())


def test_rationale_words_are_placed_on_the_original_text():
    from crisislens.runtime.schema import TokenScore

    text = "Bridge  DOWN near http://x.co now"
    toks = [TokenScore("Bridge", 0, 6, 0.9), TokenScore("down", 7, 11, 0.8), TokenScore("now", 30, 33, 0.2)]
    assert align(text, toks) == [(0, 6, 0.9), (8, 12, 0.8), (30, 33, 0.2)]
    styled = rationale_text(text, toks)
    assert styled.plain == text
    assert {text[s.start:s.end] for s in styled.spans if s.style} == {"Bridge", "DOWN"}  # "now" is below 0.5


def test_image_overlay_and_halfblock_are_deterministic(tmp_path):
    from PIL import Image

    from crisislens.tui.widgets.image_view import halfblock_strips, overlay, top_patches
    from tests.tui_fixtures import grid

    g = grid(2)
    assert top_patches(g, 3) == sorted(range(49), key=lambda i: (-[v for r in g for v in r][i], i))[:3]
    img = Image.new("RGB", (140, 140), (200, 200, 200))
    out = overlay(img, g)
    assert out.size == img.size and out.getpixel((0, 0)) != (200, 200, 200)  # a patch with no weight is dimmed
    best = top_patches(g, 1)[0]
    r, c = divmod(best, 7)
    assert out.getpixel((c * 20 + 10, r * 20 + 10)) == (200, 200, 200)  # the strongest patch is not dimmed
    assert out.getpixel((c * 20, r * 20 + 10)) == (255, 176, 0)  # and outlined
    a = halfblock_strips(img, 20, 10, grid=g)
    b = halfblock_strips(img, 20, 10, grid=g)
    assert len(a) == 10 and [s.text for s in a] == [s.text for s in b] and a[0].cell_length == 20


# ----------------------------------------------------------------------------- live triage


def test_live_mode_triages_new_posts_without_blocking(tiny_bundle, tmp_path):
    from tests.tui_fixtures import photo
    from crisislens.runtime.store.watch import TriageJob

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a1.txt").write_text("bridge collapsed, people trapped", encoding="utf-8")
    photo(inbox / "a1.png", 1)
    (inbox / "a2.txt").write_text("volunteers bring water", encoding="utf-8")
    store = tmp_path / "live.sqlite"
    job = TriageJob(tiny_bundle, [inbox], store, watch=True, interval=0.05, settle=0.2)

    async def wait_for(app, pilot, n, timeout=30.0):
        start = time.monotonic()
        while len(listed(app)) < n and time.monotonic() - start < timeout:
            await pilot.pause(0.1)
        return listed(app)

    async def go():
        app = CrisisLensApp(store, job, "halfblock")
        async with app.run_test(size=SIZE) as pilot:
            assert sorted(await wait_for(app, pilot, 2)) == ["a1", "a2"]
            await pilot.press("r")  # the UI answers while the worker watches
            (inbox / "a3.txt").write_text("road closed", encoding="utf-8")
            assert "a3" in await wait_for(app, pilot, 3)
            # the list may show a3 (the app reads its store every 2 s) before the pass reports
            for _ in range(50):
                if "watching inbox/" in str(app.screen.query_one("#status-text").render()):
                    break
                await pilot.pause(0.1)
            assert "watching inbox/" in str(app.screen.query_one("#status-text").render())
    run(go())
    with TriageStore(store) as s:
        assert s.count() == 3 and s.item("a1").has_image and sum(it.reviewed for it in s.items()) == 1


# ----------------------------------------------------------------------------- the command


def test_cli_prints_a_table_without_a_terminal(store_path, capsys):
    from crisislens.runtime.cli import main

    assert main(["tui", str(store_path), "--print"]) == 0
    out = capsys.readouterr().out
    assert "CrisisLens triage — 8 posts" in out and "[bold red]PWNED[/]" in out and "\x1b" not in out
    assert out.index("Family of five") < out.index("Great match")  # by priority


def test_cli_triages_inputs_then_prints(tiny_bundle, tmp_path, capsys):
    from crisislens.runtime.cli import main

    posts = tmp_path / "posts.jsonl"
    posts.write_text("".join(json.dumps({"id": f"t{i}", "text": f"flood damage report {i}"}) + "\n" for i in range(5))
                     + "not json\n", encoding="utf-8")
    store = tmp_path / "sub" / "s.sqlite"
    assert main(["tui", str(posts), "--bundle", str(tiny_bundle), "--store", str(store), "--print"]) == 1  # 1 bad row
    out = capsys.readouterr()
    assert "5 posts" in out.out and "posts.jsonl:6" in out.err
    with TriageStore(store) as s:
        assert s.count() == 5 and len(s.errors()) == 1
    assert main(["tui", str(posts), "--bundle", str(tiny_bundle), "--store", str(store), "--print"]) == 0  # resumed
    with TriageStore(store) as s:
        assert len(s.errors()) == 1  # the bad row is not recorded twice


def test_a_photo_the_model_could_not_read_is_marked_unusable_not_shown_as_used(tiny_bundle, tmp_path, capsys):
    from PIL import Image

    from crisislens.runtime.cli import main
    from crisislens.tui.widgets.post_list import photo_cell

    folder = tmp_path / "posts"
    folder.mkdir()
    for pid, text in (("good", "bridge collapsed near the river"), ("junk", "shelter open on main street"),
                      ("none", "water is rising fast")):
        (folder / f"{pid}.txt").write_text(text)
    Image.new("RGB", (30, 20), (120, 40, 40)).save(folder / "good.jpg")
    (folder / "junk.jpg").write_bytes(b"half a download")
    store = tmp_path / "s.sqlite"
    assert main(["tui", str(folder), "--bundle", str(tiny_bundle), "--store", str(store), "--print"]) == 0
    rows = {line.split("│")[-2].strip(): line for line in capsys.readouterr().out.splitlines() if line.count("│") > 8}
    photo_column = {text[:6]: line.split("│")[5].strip() for text, line in rows.items()}
    assert photo_column == {"bridge": "yes", "shelte": "unusable", "water ": ""}
    with TriageStore(store) as s:
        items = {it.post_id: it for it in s.items()}
    assert [(items[k].has_image, items[k].photo_unusable) for k in ("good", "junk", "none")] == [
        (True, False), (False, True), (False, False)]
    assert [photo_cell(items[k]).plain for k in ("good", "junk", "none")] == ["▣", "✕", " "]
    assert any("junk.jpg: not an image file" in w for w in items["junk"].prediction.input_warnings)


def test_cli_errors_are_one_clear_line(store_path, tmp_path, capsys):
    from crisislens.runtime.cli import main

    assert main(["tui", str(tmp_path / "nope.sqlite")]) == 2
    assert "nope.sqlite: no such triage store" in capsys.readouterr().err
    assert main(["tui", str(store_path.parent / "p01.png"), "--bundle", str(tmp_path / "nob"), "--print"]) == 2
    assert "no model bundle" in capsys.readouterr().err
    assert main(["tui"]) == 2
    assert "nothing to show" in capsys.readouterr().err
    assert main(["tui", "--watch", str(tmp_path), str(store_path)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["tui", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such file or folder" in capsys.readouterr().err


def test_reopening_a_store_with_a_job_shows_its_posts(tiny_bundle, tmp_path):
    """Progress from the worker can arrive before the list is mounted (found by `make demo` run twice)."""
    from crisislens.runtime.store.watch import TriageJob

    posts = tmp_path / "p.jsonl"
    posts.write_text("".join(json.dumps({"id": f"t{i}", "text": f"road {i} flooded"}) + "\n" for i in range(3)),
                     encoding="utf-8")
    store = tmp_path / "again.sqlite"

    async def once():
        app = CrisisLensApp(store, TriageJob(tiny_bundle, [posts], store), "halfblock")
        async with app.run_test(size=SIZE) as pilot:
            start = time.monotonic()
            while not app.job_done.is_set() and time.monotonic() - start < 30:
                await pilot.pause(0.05)
            await pilot.pause(0.2)
            assert sorted(listed(app)) == ["t0", "t1", "t2"]
            assert "triaged p.jsonl" in str(app.screen.query_one("#title").render())

    run(once())
    run(once())  # the second time the store already has every post when the app starts


def test_no_text_can_put_a_control_or_invisible_character_on_screen():
    import unicodedata

    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
    def check(text):
        for shown in (inert(text).plain, one_line(text).plain, rationale_text(text, []).plain):
            bad = [c for c in shown if c not in "\n\t" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")]
            assert not bad, (text, bad)
        assert "\n" not in one_line(text).plain

    check()


def test_input_problems_screen_and_corrections_export(store_path, tmp_path):
    from crisislens.tui.screens.problems import ProblemsScreen

    with TriageStore(store_path) as s:
        s.write_batch([], "0" * 64, "fixture", [(None, "posts.jsonl:7", "line 7: not JSON ([bold]x[/bold])")])

    async def go():
        app = make_app(store_path)
        async with app.run_test(size=SIZE) as pilot:
            assert "1 input row(s) not triaged" in str(app.screen.query_one("#title").render())
            await pilot.press("E")
            assert isinstance(app.screen, ProblemsScreen)
            assert "posts.jsonl:7" in app.export_screenshot() and "[bold]x[/bold]" in app.export_screenshot()
            await pilot.press("escape")
            await pilot.press("l", "1")  # a correction, then export the corrections from the palette
            await pilot.press("ctrl+p", *"Export corrections")
            await pilot.pause(0.3)
            await pilot.press("enter")
            await pilot.pause()
    run(go())
    out = store_path.with_name("demo-corrections.jsonl")
    [record] = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert record["label"] == "affected_individuals"
