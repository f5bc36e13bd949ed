"""One input row's fields: canonical names and their aliases, ids, optional strings, image paths
resolved and kept inside their root.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crisislens.runtime.labels import to_humanitarian5
from crisislens.runtime.preprocessing import ImageError, check_image

_FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "post_id", "tweet_id"),
    "text": ("text", "tweet_text"),
    "image": ("image", "image_path"),
    "created_at": ("created_at",),
    "source": ("source",),
    "label": ("label",),
}
# CrisisMMD has one row per image (a tweet with two photos has two rows), so the image is the post.
_CRISISMMD_ALIASES = {**_FIELD_ALIASES, "id": ("image_id",)}
_CRISISMMD_MARKERS = frozenset({"event_name", "image_id", "image"})
_CRISISMMD_IMAGE_PREFIX = "data_image/"


_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")
_URL = re.compile(r"(?i)https?://")
# The warning (and the start of the error) of a post whose photo is known only by a URL or a name
# that is not on disk; `crisislens validate` counts them per file.
PHOTO_NOT_CACHED = "photo not cached"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")  # a post's photo, in every format
COLUMN_HINT = "; name them with --id-column, --text-column, --image-column"


def column_aliases(columns: dict[str, str] | None, base: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """`base` with the columns a user named (canonical field -> column name) in place of its aliases."""
    named = {field: (name.strip().lower(),) for field, name in (columns or {}).items() if name and name.strip()}
    return {**base, **named}


class _RowError(Exception):
    """The row is skipped; the message says why."""


@dataclass(frozen=True)
class _Input:
    display: str  # how problems name the input (as the caller gave it)
    source: str  # `Post.source` for rows without one
    image_root: Path  # resolved; images must stay inside it
    strip_prefix: str = ""


@dataclass
class _Raw:
    """One input row before validation: canonical fields, metadata, repairs so far."""

    file: str
    line: int | None
    values: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str | None = None  # already known bad (malformed JSON, wrong field count, ...)
    uncached: int = 0  # photos referenced but not on disk (a URL, a missing file)


def _where(first: tuple[str, int | None], file: str) -> str:
    first_file, first_line = first
    if first_file == file and first_line is not None:
        return f"line {first_line}"
    return first_file if first_line is None else f"{first_file}:{first_line}"


def _quoted(value: str, limit: int = 80) -> str:
    """repr() of an untrusted value for a message: escapes control characters, capped in length."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _parse_id(value: Any) -> str:
    if value is None:
        raise _RowError("missing id")
    # JSON integers are fine (str); floats are not: large tweet ids lose digits as floats.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _RowError(f"id must be a string or an integer, not {_json_type(value)}")
    text = str(value).strip()
    if not text:
        raise _RowError("empty id")
    return text


def _optional_str(values: dict[str, Any], name: str) -> str | None:
    value = values.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _RowError(f"{name} must be a string, not {_json_type(value)}")
    return value if value.strip() else None


def _post_fields(raw: _Raw, inp: _Input, check_images: bool = False) -> dict[str, Any]:
    """Validate and repair a row's fields into `Post` keyword arguments (without id/warnings)."""
    values = raw.values
    text = _optional_str(values, "text")
    created_at = _optional_str(values, "created_at")
    source = _optional_str(values, "source")
    label = _optional_str(values, "label")
    if label is not None:
        label = to_humanitarian5(label)  # ValueError names the label and the known ones
    ref = values.get("image")
    image: Path | None = None
    if isinstance(ref, Path):  # folder rows come already resolved and checked
        image = ref
    else:
        ref = _optional_str(values, "image")
        if ref is not None and _URL.match(ref.strip()):  # never fetched: posts are read offline
            raw.uncached += 1
            if text is None:
                raise _RowError(f"{PHOTO_NOT_CACHED} ({_quoted(ref.strip())}) and the post has no text")
            raw.warnings.append(f"{PHOTO_NOT_CACHED} ({_quoted(ref.strip())}); read as text-only")
        elif ref is not None:
            try:
                image = _resolve_image(ref, inp)
            except _RowError as exc:  # like a missing photo: the text is still worth triaging
                if text is None:
                    raise
                raw.warnings.append(f"{exc}; read as text-only")
    if image is not None and not _is_file(image):
        raw.uncached += 1
        shown = str(ref) if isinstance(ref, str) else image.name
        if text is None:
            raise _RowError(f"image {_quoted(shown)} not found and the post has no text")
        raw.warnings.append(f"image {_quoted(shown)} not found; read as text-only")
        image = None
    elif image is not None and check_images:
        try:
            check_image(image)
        except ImageError as exc:
            shown = str(ref) if isinstance(ref, str) else image.name
            if text is None:
                raise _RowError(
                    f"image {_quoted(shown)} cannot be used ({exc.problem}) and the post has no text"
                ) from None
            raw.warnings.append(f"image {_quoted(shown)} cannot be used ({exc.problem}); read as text-only")
            image = None
    if text is None and image is None:
        raise _RowError("neither text nor image")
    return {
        "text": text,
        "image": image,
        "source": source or inp.source,
        "created_at": created_at,
        "label": label,
        "metadata": raw.metadata,
        "platform": _optional_str(values, "platform"),
        "author": _optional_str(values, "author"),
    }


def _contained(path: Path, root: Path, shown: str) -> Path:
    """`path` with links resolved, if it stays inside `root` (already resolved)."""
    try:
        target = path.resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # link loops, NUL bytes
        raise _RowError(f"path {_quoted(shown)} cannot be resolved: {exc}") from None
    if not target.is_relative_to(root):
        raise _RowError(f"path {_quoted(shown)} leads outside {root} (path traversal or a link out); not read")
    return target


def _resolve_image(ref: str, inp: _Input) -> Path:
    rel = ref.strip().replace("\\", "/")  # paths written on Windows
    if inp.strip_prefix and rel.startswith(inp.strip_prefix):
        rel = rel[len(inp.strip_prefix) :]
    if "\x00" in rel:
        raise _RowError(f"image path {_quoted(ref)} contains a NUL byte")
    if rel.startswith("/") or _WINDOWS_DRIVE.match(rel):
        raise _RowError(f"image path {_quoted(ref)} is absolute; image paths must be relative to {inp.image_root}")
    return _contained(inp.image_root / rel, inp.image_root, ref)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # NUL byte, name too long
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def _split_fields(obj: dict[str, Any], aliases: dict[str, tuple[str, ...]]) -> tuple[dict[str, Any], dict[str, Any]]:
    canonical = _assign_fields(list(obj), aliases)
    values: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for key, value in obj.items():
        if key in canonical:
            values[canonical[key]] = value
        else:
            metadata[key] = value
    return values, metadata


def _assign_fields(names: list[str], aliases: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """Map input names to canonical fields: the first alias present wins, the rest is metadata."""
    by_lower: dict[str, str] = {}
    for name in names:
        by_lower.setdefault(name.strip().lower(), name)
    assigned: dict[str, str] = {}
    for canonical, options in aliases.items():
        for option in options:
            if option in by_lower:
                assigned[by_lower[option]] = canonical
                break
    return assigned
