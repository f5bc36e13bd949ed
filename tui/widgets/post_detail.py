"""The detail pane: the post with its rationale, photo, probabilities, warnings and model."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from crisislens.runtime.labels import get_label
from crisislens.runtime.store.review import ReviewItem
from crisislens.tui.safe import inert
from crisislens.tui.widgets.image_view import PatchImage
from crisislens.tui.widgets.prob_bars import ProbabilityBars
from crisislens.tui.widgets.rationale import RationaleText, legend


def headline(item: ReviewItem) -> Text:
    label = get_label(item.label)
    out = Text()
    out.append(f" {label.title} ", style=f"bold white on {label.colour}")
    out.append(f"  {item.confidence:.0%} confident · priority {item.priority:.2f}")
    if item.review_label is not None:
        fixed = get_label(item.review_label)
        if item.corrected:
            out.append("  ✎ corrected to ", style="green")
            out.append(f" {fixed.title} ", style=f"bold white on {fixed.colour}")
        else:
            out.append("  ✓ label confirmed", style="green")
    elif item.reviewed:
        out.append("  ✓ reviewed", style="green")
    if item.flagged:
        out.append("  ⚑ flagged", style="bold red")
    if item.gold_label:
        out.append("\ngold label in the input: ", style="dim")
        out.append(get_label(item.gold_label).title, style="dim bold")
    return out


def model_line(item: ReviewItem) -> Text:
    out = Text(style="dim")
    out.append("post ")
    out.append_text(inert(item.post_id, keep_newlines=False))
    if item.source:
        out.append(" · ")
        out.append_text(inert(item.source, keep_newlines=False))
    out.append_text(origin_line(item))
    out.append(f"\nmodel {item.prediction.model_id or '?'} ({item.variant})")
    timings = item.prediction.timings
    if timings:
        out.append(" · " + ", ".join(f"{k} {v:.1f} ms" for k, v in timings.items()))
        out.append(f" · total {sum(timings.values()):.1f} ms/post")
    return out


def origin_line(item: ReviewItem) -> Text:
    """Where the post came from: platform, author and time as the archive gives them, then the
    file and line (or message); and a note when its text was repaired (the store keeps the original)."""
    out = Text(style="dim")
    for part in (item.platform, item.author, item.created_at):
        if part:
            out.append(" · ")
            out.append_text(inert(part, keep_newlines=False))
    if item.origin:
        out.append("\nfrom ")
        out.append_text(inert(item.origin, keep_newlines=False))
    if item.original_text is not None:
        out.append("\ntext repaired: it was decoded with the wrong codec upstream (the store keeps the original)")
    return out


class PostDetail(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Static(id="headline")
        yield RationaleText(id="post-text")
        yield Static(legend(), id="legend")
        yield PatchImage(id="photo")
        yield ProbabilityBars(id="probabilities")
        yield Static(id="warnings")
        yield Static(id="model")

    def set_renderer(self, renderer: str) -> None:
        self.query_one(PatchImage).renderer = renderer

    def show(self, item: ReviewItem | None) -> None:
        for child in self.children:
            child.display = item is not None
        if item is None:
            return
        p = item.prediction
        self.query_one("#headline", Static).update(headline(item))
        self.query_one(RationaleText).show(item.text, p.token_rationale)
        self.query_one("#legend", Static).display = bool(item.text)
        warnings = self.query_one(PatchImage).show(item.image, p.patch_rationale)
        self.query_one(ProbabilityBars).show(p.probabilities, chosen=p.label)
        warnings = list(p.input_warnings) + warnings
        box = self.query_one("#warnings", Static)
        box.display = bool(warnings)
        box.update(Text("⚠ ", style="bold yellow").append_text(inert("\n⚠ ".join(warnings))) if warnings else "")
        self.query_one("#model", Static).update(model_line(item))
        self.scroll_home(animate=False)
