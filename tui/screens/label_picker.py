"""Correct the label: pick the right class (keys 1–5, or arrows + Enter; Esc cancels)."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from crisislens.runtime.labels import LABELS


def option_text(index: int, name: str, model_label: str) -> Text:
    label = LABELS[index]
    out = Text(f"{index + 1}  ")
    out.append("● ", style=label.colour)
    out.append(label.title, style="bold")
    if name == model_label:
        out.append("  (model)", style="dim")
    out.append(f"\n   {label.description}", style="dim")
    return out


class LabelPicker(ModalScreen[str | None]):
    BINDINGS = [("escape", "cancel", "Cancel"), *[(str(i + 1), f"pick({i})", LABELS[i].title) for i in range(len(LABELS))]]

    def __init__(self, current: str, model_label: str):
        super().__init__()
        self.current, self.model_label = current, model_label

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Static(Text("Correct label — the right class for this post (1–5, Enter; Esc cancels)", style="bold"))
            yield OptionList(*[Option(option_text(i, label.name, self.model_label), id=label.name)
                               for i, label in enumerate(LABELS)], id="labels")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = [label.name for label in LABELS].index(self.current)
        options.focus()

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_pick(self, index: int) -> None:
        self.dismiss(LABELS[index].name)

    def action_cancel(self) -> None:
        self.dismiss(None)
