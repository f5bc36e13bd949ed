"""Writing a store's predictions (JSONL or CSV) and the responders' corrected labels (JSONL
labelled posts, photos beside them); each file written atomically.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crisislens.runtime.files import atomic_open
from crisislens.runtime.preprocessing import ImageError, load_image
from crisislens.runtime.store.review import ReviewItem, select, top_words
from crisislens.runtime.store.sqlite import IMAGE_ROOTS, Feedback, TriageStore

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


EXPORT_FORMATS = ("csv", "jsonl")
CSV_COLUMNS = [
    "rank",
    "post_id",
    "priority",
    "label",
    "confidence",
    "top_words",
    "has_image",
    "warnings",
    "reviewed",
    "review_label",
    "flagged",
    "gold_label",
    "text",
    "image",
]


def _export_format(out: Path, fmt: str | None) -> str:
    fmt = (fmt or out.suffix.lstrip(".")).lower()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"{out}: unknown export format {fmt!r}; use .jsonl or .csv")
    return fmt


def export_items(items: Sequence[ReviewItem], out: Path, fmt: str | None = None) -> int:
    """Write `items` in their order (e.g. the TUI's current list), each with its rank and priority,
    as JSONL (everything) or CSV (one row per post; class names as in files, not display titles).

    Written to a temporary file and renamed, so an existing export is never left half-written."""
    out = Path(out)
    fmt = _export_format(out, fmt)
    with atomic_open(out, "w", newline="") as f:
        if fmt == "jsonl":
            for rank, it in enumerate(items, 1):
                f.write(json.dumps({"rank": rank, **_item_record(it)}, ensure_ascii=False) + "\n")
        else:
            w = _FormulaSafeWriter(csv.writer(f))
            w.writerow(CSV_COLUMNS)
            for rank, it in enumerate(items, 1):
                p = it.prediction
                w.writerow(
                    [
                        rank,
                        it.post_id,
                        f"{it.priority:.4f}",
                        p.label,
                        f"{p.confidence:.4f}",
                        " ".join(top_words(p)),
                        p.patch_rationale is not None,
                        " | ".join(p.input_warnings),
                        it.reviewed,
                        it.review_label or "",
                        it.flagged,
                        it.gold_label or "",
                        it.text or "",
                        it.image or "",
                    ]
                )
    return len(items)


# A spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...) from a
# tweet); OWASP's advice: prefix such a cell with a quote, which the spreadsheet shows as text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(value: object) -> object:
    """`value` for a CSV cell a spreadsheet will not run: text starting like a formula gets a `'`."""
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


class _FormulaSafeWriter:
    """A csv writer whose every cell goes through `formula_safe`."""

    def __init__(self, writer: Any):
        self._writer = writer

    def writerow(self, row: Sequence[object]) -> None:
        self._writer.writerow([formula_safe(v) for v in row])


def _item_record(it: ReviewItem) -> dict[str, Any]:
    return {
        "post_id": it.post_id,
        "priority": it.priority,
        "text": it.text,
        "image": it.image,
        "source": it.source,
        "created_at": it.created_at,
        "gold_label": it.gold_label,
        "prediction": it.prediction.to_dict(),
        "reviewed": it.reviewed,
        "review_label": it.review_label,
        "flagged": it.flagged,
        "variant": it.variant,
    }


def export_results(store: TriageStore, out: Path, fmt: str | None = None) -> int:
    """Write every prediction of the store in the order the app lists them, most urgent first
    (`review.select`: priority), ranked from 1 (see `export_items`)."""
    return export_items(select(store.items()), out, fmt)


def _not_exportable(src: Path, roots: list[Path] | None) -> str | None:
    """Why the photo at `src` must not be copied, or None when it may."""
    try:
        real = src.resolve(strict=True)
    except (OSError, RuntimeError):
        return "file not found"
    if roots is not None and not any(real.is_relative_to(root) for root in roots):
        return "outside the folders the run read images from"
    try:
        load_image(real)
    except ImageError as exc:
        return exc.problem
    return None


def export_feedback(store: TriageStore, out: Path) -> int:
    """The responders' labels as labelled posts: JSONL (id, text, image, label, model_label,
    corrected_at, note) that `crisislens eval --input` and the training readers read. Photos are
    copied into `<out stem>-images/` beside it, so the file travels as one self-contained set.
    The latest label of each post wins; a label that confirms the model is a label too.

    A stored path is checked again now, whatever the store says: only a file inside the folders
    the run read images from (`IMAGE_ROOTS`, when recorded) that decodes as a photo is copied;
    a private key or /etc/shadow behind an edited path is left where it is."""
    out = Path(out)
    latest: dict[str, Feedback] = {}
    for fb in store.feedback():
        if fb.action == "label":
            latest[fb.post_id] = fb
    photos = out.with_name(f"{out.stem}-images")
    recorded = store.meta().get(IMAGE_ROOTS)
    roots = None if recorded is None else [Path(r) for r in recorded]
    with atomic_open(out) as f:
        for n, (pid, fb) in enumerate(latest.items()):
            it = store.item(pid)
            record = {
                "id": pid,
                "text": it.text,
                "image": None,
                "label": fb.label,
                "model_label": fb.model_label,
                "corrected_at": fb.at,
                "note": fb.note,
                "source": it.source,
            }
            if it.image:
                src = Path(it.image)
                refused = _not_exportable(src, roots)
                if refused is None:
                    photos.mkdir(parents=True, exist_ok=True)
                    name = f"{n:06d}_{_SAFE_NAME.sub('_', pid)[:80]}{src.suffix.lower()}"
                    shutil.copyfile(src.resolve(), photos / name)
                    record["image"] = f"{photos.name}/{name}"
                elif not src.is_file():
                    record["photo_missing"] = str(src)
                else:
                    record["photo_not_copied"] = f"{src}: not copied ({refused})"
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return len(latest)
