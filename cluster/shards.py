"""The shard folder a cluster run writes (`crisislens triage --engine ray --parquet DIR`):

```
DIR/
  run.json                    what the shards were made with: bundle hash, variant, classes,
                              shard size, and each input with its size and time (resume checks)
  predictions/<shard>.parquet one row per predicted post (PREDICTION_SCHEMA)
  errors/<shard>.parquet      one row per problem: the readers' and the run's (ERROR_SCHEMA)
```

A shard is `<input stem>-<8 hex of the input's path>-<part>`: the posts number part×size to
(part+1)×size−1 of one input, in the order its reader gives them. Each file is written whole
(a temporary file renamed over it); a shard's errors are written before its predictions, so a
shard is done exactly when its predictions file exists, and a rerun skips those.

The rows hold what the triage store holds (`crisislens store import` fills one from them):
the prediction (label, probabilities, rationale words with scores, patch grid, warnings, bundle
hash), the post's fields and who it is (`runtime.store.identity`: input, content digest).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.files import atomic_write
from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.schema import Post, Prediction, TokenScore
from crisislens.runtime.store.identity import fingerprint, place_of
from crisislens.runtime.store.review import priority

RUN_FILE = "run.json"
PREDICTIONS = "predictions"
ERRORS = "errors"
SHARD_SIZE = 10_000  # posts a shard: a killed run redoes at most the shards in flight
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")

_WORD = pa.struct([("word", pa.string()), ("start", pa.int32()), ("end", pa.int32()), ("score", pa.float64())])
PREDICTION_SCHEMA = pa.schema(
    [
        ("post_id", pa.string()),
        ("label", pa.string()),
        ("confidence", pa.float64()),
        ("priority", pa.float64()),  # the app's sort weight: expected severity (`runtime.store.review.priority`)
        ("probabilities", pa.struct([(name, pa.float64()) for name in LABEL_NAMES])),
        ("rationale", pa.list_(_WORD)),
        ("patch_grid", pa.list_(pa.list_(pa.float64()))),  # rows of columns; null without a photo
        ("warnings", pa.list_(pa.string())),
        ("timings_ms", pa.map_(pa.string(), pa.float64())),
        ("model_id", pa.string()),
        ("bundle_sha256", pa.string()),
        ("variant", pa.string()),
        ("text", pa.string()),
        ("image", pa.string()),
        ("source", pa.string()),
        ("created_at", pa.string()),
        ("gold_label", pa.string()),
        ("origin", pa.string()),
        ("platform", pa.string()),
        ("author", pa.string()),
        ("original_text", pa.string()),
        ("place", pa.string()),
        ("fingerprint", pa.string()),
        ("worker", pa.string()),  # host:pid of the actor that predicted it
    ]
)
ERROR_SCHEMA = pa.schema(
    [
        ("post_id", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),
        ("message", pa.string()),
    ]
)


class ShardError(CrisisLensError, ValueError):
    """A shard folder that does not fit this run, or a shard file that cannot be read."""


Problem = tuple[str | None, str, str]  # (post id, FILE[:LINE], message), as the store records it


def shard_prefix(path: Path) -> str:
    """The shards' name stem for one input: readable, and unique per resolved path."""
    resolved = str(path.resolve())
    stem = _SAFE.sub("_", path.name or "input")[:40]
    return f"{stem}-{hashlib.sha1(resolved.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"


def shard_name(prefix: str, part: int) -> str:
    return f"{prefix}-{part:05d}"


def input_signature(path: Path) -> str:
    """What says an input changed since its shards were written: a file's size and time, a
    folder's files with theirs."""
    try:
        if path.is_dir():
            entries = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file())
            return hashlib.sha1(json.dumps(entries).encode("utf-8", "surrogatepass")).hexdigest()
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        return "missing"


@dataclass
class RunInfo:
    """`run.json`: what a shard folder's shards were made with."""

    bundle_sha256: str
    variant: str
    classes: list[str] | None
    shard_size: int
    inputs: dict[str, dict[str, str]] = field(default_factory=dict)  # prefix -> {"path", "signature"}

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, ensure_ascii=True) + "\n"

    @classmethod
    def read(cls, folder: Path) -> RunInfo | None:
        path = folder / RUN_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise ShardError(f"{path}: not a shard folder's run file ({exc})") from None


def check_resume(folder: Path, now: RunInfo) -> RunInfo:
    """The run file to write for `now` in `folder`: `now` itself, merged with an earlier run's
    inputs. A folder of shards made with another bundle, variant, class set or shard size, or an
    input that changed since, is refused: its shards would not be this run's answers."""
    before = RunInfo.read(folder)
    if before is None:
        return now
    for key in ("bundle_sha256", "variant", "classes", "shard_size"):
        if getattr(before, key) != getattr(now, key):
            raise ShardError(
                f"{folder}: its shards were made with {key} {getattr(before, key)!r}, this run has "
                f"{getattr(now, key)!r}; write to another --parquet folder"
            )
    for prefix, info in now.inputs.items():
        old = before.inputs.get(prefix)
        if old is not None and old["signature"] != info["signature"]:
            raise ShardError(
                f"{info['path']}: changed since its shards were written to {folder} (size or time); "
                "write to another --parquet folder"
            )
    return RunInfo(now.bundle_sha256, now.variant, now.classes, now.shard_size, {**before.inputs, **now.inputs})


def done_shards(folder: Path) -> set[str]:
    """The shards whose predictions file is written (their errors are written before)."""
    return {p.stem for p in (folder / PREDICTIONS).glob("*.parquet")}


# ----------------------------------------------------------------------------- rows


def split_where(where: str) -> tuple[str, int | None]:
    """`FILE:LINE` -> (FILE, LINE); a place without a line -> (place, None)."""
    head, sep, tail = where.rpartition(":")
    return (head, int(tail)) if sep and tail.isdigit() else (where, None)


def error_row(problem: Problem) -> dict[str, Any]:
    post_id, where, message = problem
    file, line = split_where(where)
    return {"post_id": post_id, "file": file, "line": line, "message": message}


def prediction_row(post: Post, pred: Prediction, bundle_sha256: str, variant: str, worker: str) -> dict[str, Any]:
    """One predictions row: the prediction, the post's fields and its identity."""
    return {
        "post_id": post.id,
        "label": pred.label,
        "confidence": pred.confidence,
        "priority": priority(pred.probabilities),
        "probabilities": {name: float(pred.probabilities.get(name, 0.0)) for name in LABEL_NAMES},
        "rationale": [{"word": t.text, "start": t.start, "end": t.end, "score": t.score} for t in pred.token_rationale],
        "patch_grid": [list(row) for row in pred.patch_rationale] if pred.patch_rationale is not None else None,
        "warnings": list(pred.input_warnings),
        "timings_ms": dict(pred.timings),
        "model_id": pred.model_id,
        "bundle_sha256": bundle_sha256,
        "variant": variant,
        "text": post.text,
        "image": str(post.image) if post.image is not None else None,
        "source": post.source,
        "created_at": post.created_at,
        "gold_label": post.label,
        "origin": post.origin,
        "platform": post.platform,
        "author": post.author,
        "original_text": post.original_text,
        "place": place_of(post),
        "fingerprint": fingerprint(post),
        "worker": worker,
    }


def from_row(row: Mapping[str, Any]) -> tuple[Post, Prediction]:
    """A predictions row back as the (post, prediction) a single-machine run would store."""
    post = Post(
        id=row["post_id"],
        text=row["text"],
        image=Path(row["image"]) if row["image"] else None,
        source=row["source"],
        created_at=row["created_at"],
        label=row["gold_label"],
        origin=row["origin"],
        platform=row["platform"],
        author=row["author"],
        original_text=row["original_text"],
    )
    grid = row["patch_grid"]
    pred = Prediction(
        post_id=row["post_id"],
        label=row["label"],
        probabilities=dict(row["probabilities"]),
        token_rationale=tuple(TokenScore(w["word"], w["start"], w["end"], w["score"]) for w in row["rationale"]),
        patch_rationale=tuple(tuple(r) for r in grid) if grid is not None else None,
        timings=dict(row["timings_ms"] or []),
        model_id=row["model_id"],
        input_warnings=tuple(row["warnings"] or ()),
    )
    return post, pred


# ----------------------------------------------------------------------------- files


def _parquet_bytes(rows: list[dict[str, Any]], schema: pa.Schema) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), sink, compression="zstd")
    return sink.getvalue()


def write_shard(folder: Path, name: str, predictions: list[dict[str, Any]], errors: list[dict[str, Any]]) -> None:
    """Write one shard, errors first: its predictions file, written last, marks it done."""
    atomic_write(folder / ERRORS / f"{name}.parquet", _parquet_bytes(errors, ERROR_SCHEMA))
    rows = [{**r, "timings_ms": list(r["timings_ms"].items())} for r in predictions]  # Arrow's map: (key, value)
    atomic_write(folder / PREDICTIONS / f"{name}.parquet", _parquet_bytes(rows, PREDICTION_SCHEMA))


def read_table(path: Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise ShardError(f"{path}: not a readable shard ({exc})") from None


def shard_files(folder: Path, kind: str = PREDICTIONS) -> list[Path]:
    """The shard files of one kind, in name order (input, then part)."""
    return sorted((folder / kind).glob("*.parquet"))


def iter_rows(paths: Iterable[Path], columns: list[str] | None = None) -> Iterable[dict[str, Any]]:
    for path in paths:
        yield from read_table(path, columns).to_pylist()


__all__ = [
    "ERRORS",
    "ERROR_SCHEMA",
    "PREDICTIONS",
    "PREDICTION_SCHEMA",
    "RUN_FILE",
    "SHARD_SIZE",
    "RunInfo",
    "ShardError",
    "check_resume",
    "done_shards",
    "error_row",
    "from_row",
    "input_signature",
    "iter_rows",
    "prediction_row",
    "read_table",
    "shard_files",
    "shard_name",
    "shard_prefix",
    "split_where",
    "write_shard",
]
