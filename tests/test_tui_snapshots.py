"""SVG snapshots of the TUI (pytest-textual-snapshot) on the fixed fixture store, with the
deterministic half-block image renderer. After an intended change of the screen, review the
new pictures and accept them with `pytest tests/test_tui_snapshots.py --snapshot-update`."""

from __future__ import annotations

import pytest

pytest.importorskip("pytest_textual_snapshot", reason="snapshot tests need the [dev] extra")

from crisislens.tui.app import CrisisLensApp  # noqa: E402
from tests.tui_fixtures import build_store  # noqa: E402

SIZE = (130, 42)


@pytest.fixture
def app(tmp_path):
    return CrisisLensApp(build_store(tmp_path), image_renderer="halfblock")


def test_main_screen(app, snap_compare):
    assert snap_compare(app, terminal_size=SIZE)


def test_after_review_actions_and_filter(app, snap_compare):
    # correct the top post, flag the next, then show photos only, sorted by confidence
    assert snap_compare(app, press=["l", "2", "f", "i", "s"], terminal_size=SIZE)


def test_label_picker(app, snap_compare):
    assert snap_compare(app, press=["j", "l"], terminal_size=SIZE)


def test_help_screen(app, snap_compare):
    assert snap_compare(app, press=["question_mark"], terminal_size=SIZE)


def test_untrusted_text_is_inert(app, snap_compare):
    assert snap_compare(app, press=["slash", *"PWNED", "enter"], terminal_size=SIZE)


def test_narrow_terminal_stacks_list_over_detail(app, snap_compare):
    assert snap_compare(app, terminal_size=(80, 24))
