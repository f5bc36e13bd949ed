"""Colours the TUI uses beside `runtime.labels` (which holds each class's one display name, `Label.title`)."""

from __future__ import annotations

RATIONALE = "#ffb000"  # highlighted words and outlined patches share one colour
