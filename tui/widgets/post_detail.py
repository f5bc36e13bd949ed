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
    """The class the post is listed under and why: the model's label, or the responder's label
    with the model's probability for it (never the model's confidence in a class it no longer shows)."""
    out = Text()
    if item.corrected:
        fixed, model = get_label(item.final_label), get_label(item.label)
        out.append("✎ your label ", style="green")
        out.append(f" {fixed.title} ", style=f"bold white on {fixed.colour}")
        out.append(f"  model: {item.final_probability:.0%} for it · priority {item.priority:.2f} (your label's severity)")
        out.append(f"\nthe model said {model.title} at {item.confidence:.0%}", style="dim")
    else:
        label = get_label(item.label)
        out.append(f" {label.title} ", style=f"bold white on {label.colour}")
        out.append(f"  {item.confidence:.0%} confident · priority {item.priority:.2f}")
        if item.review_label is not None:
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
        # The engine times a batch; a post's share is the batch's time over its size, not its own latency.
        out.append(" · " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
        out.append(f" · {sum(timings.values()):.1f} ms/post, averaged over its batch")
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
        # The class probabilities come right under the headline: on an 80x24 screen the pane is
        # a dozen rows, and the bars are what a responder checks before reading on.
        yield Static(id="empty")
        yield Static(id="headline")
        yield ProbabilityBars(id="probabilities")
        yield RationaleText(id="post-text")
        yield Static(legend(), id="legend")
        yield PatchImage(id="photo")
        yield Static(id="warnings")
        yield Static(id="model")

    def set_renderer(self, renderer: str) -> None:
        self.query_one(PatchImage).renderer = renderer

    def show(self, item: ReviewItem | None, empty: str = "") -> None:
        """Show `item`; with none, the `empty` line (why the list is empty)."""
        for child in self.children:
            child.display = item is not None
        box = self.query_one("#empty", Static)
        box.display = item is None and bool(empty)
        if item is None:
            box.update(Text(empty, style="italic"))
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
