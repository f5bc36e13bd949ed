"""Messages the background triage worker posts to the app (thread-safe: `post_message`)."""

from __future__ import annotations

from textual.message import Message


class TriageProgress(Message):
    """`done` of `total` posts of the current pass are stored; `note` says what is going on."""

    def __init__(self, done: int, total: int, note: str = ""):
        super().__init__()
        self.done, self.total, self.note = done, total, note


class TriageFailed(Message):
    def __init__(self, error: str):
        super().__init__()
        self.error = error


class TriageDone(Message):
    """The worker has returned (finished, stopped or failed)."""
