"""`Post` (what comes in) and `Prediction` (what comes out), with a JSON round-trip.

Both are plain dataclasses so that every stage — the readers, the training data layer, the
backends, the SQLite store and the TUI — speaks the same types.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from crisislens.runtime.labels import LABEL_NAMES

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Post:
    """One cached social-media post: text, image, or both.

    `image` is an absolute (resolved) path or None for a text-only post; `label` is a gold
    label when the source carries one (evaluation files); `warnings` are input problems the
    reader repaired (e.g. invalid UTF-8 replaced) — the post is still usable; `origin` is
    where the reader found it, so a problem found later (in a run) can name the file and line;
    `platform` (twitter, telegram, whatsapp) and `author` (a handle or a sender's name) say who
    posted it where, when the archive says so; `original_text` is the text as read when the
    reader repaired it (mojibake), None when `text` is what the input held.
    """

    id: str
    text: str | None = None
    image: Path | None = None
    source: str | None = None
    created_at: str | None = None
    label: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    origin: str | None = None  # where the reader found it: FILE:LINE, or the file of a folder post
    platform: str | None = None
    author: str | None = None
    original_text: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ValueError("a post needs a non-empty string id")
        if self.image is not None and not isinstance(self.image, Path):
            object.__setattr__(self, "image", Path(self.image))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def has_text(self) -> bool:
        return bool(self.text and self.text.strip())

    @property
    def has_image(self) -> bool:
        return self.image is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["image"] = str(self.image) if self.image is not None else None
        data["warnings"] = list(self.warnings)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Post:
        return cls(
            id=data["id"],
            text=data.get("text"),
            image=Path(data["image"]) if data.get("image") else None,
            source=data.get("source"),
            created_at=data.get("created_at"),
            label=data.get("label"),
            metadata=dict(data.get("metadata") or {}),
            warnings=tuple(data.get("warnings") or ()),
            origin=data.get("origin"),
            platform=data.get("platform"),
            author=data.get("author"),
            original_text=data.get("original_text"),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Post:
        return cls.from_dict(json.loads(text))


@dataclass(frozen=True)
class TokenScore:
    """A word of the post text with its rationale score; `start`/`end` are character offsets."""

    text: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class Prediction:
    """What a model says about one post, and why.

    `probabilities` maps every label name to its probability (they sum to 1 over the labels
    the prediction was restricted to). `token_rationale` holds words with scores;
    `patch_rationale` is the image's patch-score grid (rows of columns), None without image.
    `timings` are milliseconds per stage (e.g. "preprocess", "model", "total").
    """

    post_id: str
    label: str
    probabilities: dict[str, float]
    token_rationale: tuple[TokenScore, ...] = ()
    patch_rationale: tuple[tuple[float, ...], ...] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    model_id: str = ""
    input_warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.label not in LABEL_NAMES:
            raise ValueError(f"prediction label {self.label!r} is not one of {', '.join(LABEL_NAMES)}")
        unknown = set(self.probabilities) - set(LABEL_NAMES)
        if unknown:
            raise ValueError(f"probabilities for unknown labels: {', '.join(sorted(unknown))}")
        bad = [k for k, v in self.probabilities.items() if not (math.isfinite(v) and 0.0 <= v <= 1.0 + 1e-6)]
        if bad:
            raise ValueError(f"probabilities must be finite and in [0, 1]; bad for: {', '.join(bad)}")
        object.__setattr__(self, "token_rationale", tuple(self.token_rationale))
        if self.patch_rationale is not None:
            object.__setattr__(
                self, "patch_rationale", tuple(tuple(float(v) for v in row) for row in self.patch_rationale)
            )
        object.__setattr__(self, "input_warnings", tuple(self.input_warnings))

    @property
    def confidence(self) -> float:
        return float(self.probabilities.get(self.label, 0.0))

    @property
    def has_evidence(self) -> bool:
        """Whether the model saw at least one word or a photo. Without either, its label is the
        model's prior (its answer to an empty post), not a reading of the post."""
        return bool(self.token_rationale) or self.patch_rationale is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "post_id": self.post_id,
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "token_rationale": [asdict(t) for t in self.token_rationale],
            "patch_rationale": [list(row) for row in self.patch_rationale]
            if self.patch_rationale is not None
            else None,
            "timings": dict(self.timings),
            "model_id": self.model_id,
            "input_warnings": list(self.input_warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prediction:
        version = data.get("schema", SCHEMA_VERSION)
        if version != SCHEMA_VERSION:
            raise ValueError(f"prediction schema {version} is not supported (this CrisisLens reads {SCHEMA_VERSION})")
        patches = data.get("patch_rationale")
        return cls(
            post_id=data["post_id"],
            label=data["label"],
            probabilities={k: float(v) for k, v in data["probabilities"].items()},
            token_rationale=tuple(TokenScore(**t) for t in data.get("token_rationale") or ()),
            patch_rationale=tuple(tuple(row) for row in patches) if patches is not None else None,
            timings={k: float(v) for k, v in (data.get("timings") or {}).items()},
            model_id=data.get("model_id", ""),
            input_warnings=tuple(data.get("input_warnings") or ()),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Prediction:
        return cls.from_dict(json.loads(text))
