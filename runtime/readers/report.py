"""What a read found: the posts, and every problem with its file, line and severity."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.schema import Post

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class ReadProblem:
    """A row (or a whole input, `line` None) that was skipped (error) or repaired (warning)."""

    file: str
    line: int | None
    message: str
    severity: Severity = "error"
    post_id: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class ReadError(CrisisLensError):
    """Raised in strict mode at the first problem, error or warning."""

    def __init__(self, problem: ReadProblem):
        super().__init__(str(problem))
        self.problem = problem


@dataclass
class FileSummary:
    """What one input held, for `crisislens validate`: its format (detected from its content),
    posts read, photos found on disk, photos referenced but not cached, rows not read."""

    file: str
    format: str
    posts: int = 0
    photos: int = 0
    not_cached: int = 0
    errors: int = 0


@dataclass
class ReadReport:
    """Everything one read produced; `rows_seen` = posts + row errors (file errors have no rows)."""

    posts: list[Post] = field(default_factory=list)
    problems: list[ReadProblem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    rows_seen: int = 0
    inputs: list[FileSummary] = field(default_factory=list)

    @property
    def errors(self) -> list[ReadProblem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[ReadProblem]:
        return [p for p in self.problems if p.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        """Counts and problems, JSON-ready (what `crisislens validate --json` prints)."""
        labels = Counter(p.label for p in self.posts if p.label is not None)
        return {
            "files": [str(f) for f in self.files],
            "rows": self.rows_seen,
            "posts": len(self.posts),
            "with_text": sum(p.has_text for p in self.posts),
            "with_image": sum(p.has_image for p in self.posts),
            "with_both": sum(p.has_text and p.has_image for p in self.posts),
            "labels": {name: labels[name] for name in LABEL_NAMES if labels[name]},
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [asdict(p) for p in self.problems],
            "inputs": [asdict(s) for s in self.inputs],
        }
