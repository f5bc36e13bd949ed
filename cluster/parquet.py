"""Posts from a Parquet file, read by the JSONL reader's own row rules: a row is what one JSON line
holding the same fields would be (the same aliases, id checks, label mapping, image paths
resolved against the file's folder or --image-root and kept inside it, mojibake repaired). A
problem names the file and the row, counted from 1 as FILE:ROW.

The rules live in `runtime.readers` (its row type and the validation every format shares); this
module only turns Parquet values into the values a JSON line carries: timestamps and dates as
ISO 8601 text, bytes and other types as text, so that a post travels as JSON.
"""

from __future__ import annotations

import datetime as _dt
import decimal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crisislens.runtime.readers import ReadProblem
from crisislens.runtime.readers.fields import COLUMN_HINT, _Input, _quoted, _Raw, _split_fields
from crisislens.runtime.readers.reader import _Reader
from crisislens.runtime.schema import Post

PARQUET_SUFFIX = ".parquet"
ROWS_PER_READ = 4096  # rows decoded at a time: memory stays flat in the file's size


def _plain(value: Any) -> Any:
    """A Parquet value as JSON would carry it."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


def iter_parquet(
    path: Path, *, image_root: Path | str | None = None, columns: dict[str, str] | None = None
) -> Iterator[Post | ReadProblem]:
    """The posts and problems of one Parquet file, in row order."""
    display = str(path)
    reader = _Reader(image_root, columns=columns)
    root = (Path(image_root) if image_root is not None else path.parent).resolve()
    inp = _Input(display, path.name, root)
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        yield ReadProblem(display, None, f"not a readable Parquet file: {exc}")
        return
    row = 0
    try:
        for batch in parquet.iter_batches(batch_size=ROWS_PER_READ):
            for obj in batch.to_pylist():
                row += 1
                raw = _Raw(display, row)
                raw.values, raw.metadata = _split_fields({str(k): _plain(v) for k, v in obj.items()}, reader.aliases)
                if not raw.values.keys() & {"id", "text", "image"}:
                    raw.error = f"no id, text or image column (found: {_quoted(', '.join(obj), 200)}){COLUMN_HINT}"
                yield from reader._finish(raw, inp)
    except (OSError, pa.ArrowException) as exc:  # a damaged row group: the rest of the file is lost
        yield ReadProblem(display, row + 1, f"cannot read past this row: {exc}")
    if row == 0:
        yield ReadProblem(display, None, "empty file: no posts (not one Parquet row)")


__all__ = ["PARQUET_SUFFIX", "iter_parquet"]
