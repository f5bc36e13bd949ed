"""Class probability bars, in label order, each in its class colour."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual.widgets import Static

from crisislens.runtime.labels import LABELS

BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(fraction: float, width: int) -> str:
    """A bar of `width` cells filled to `fraction`, with eighth-cell precision."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[part] if part else "")).ljust(width)


def probability_bars(probabilities: Mapping[str, float], width: int = 20, chosen: str | None = None) -> Text:
    """One line per class: marker, short name, bar, percentage (about 45 cells wide at width 20)."""
    out = Text()
    title_width = max(len(label.title) for label in LABELS)
    for label in LABELS:
        p = float(probabilities.get(label.name, 0.0))
        mark = "▶ " if label.name == chosen else "  "
        out.append(mark + label.title.ljust(title_width) + " ", style="bold" if label.name == chosen else "")
        out.append(bar(p, width), style=label.colour)
        out.append(f" {p:6.1%}\n")
    out.rstrip()
    return out


class ProbabilityBars(Static):
    def show(self, probabilities: Mapping[str, float], chosen: str | None = None) -> None:
        self.update(probability_bars(probabilities, chosen=chosen))
