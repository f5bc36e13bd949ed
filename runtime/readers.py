"""Reading cached posts into `Post`s: JSONL, CSV/TSV (CrisisMMD task files included) and
folders of `ID.txt` + `ID.jpg` pairs.

Field data is messy, so a bad row never stops a read: it becomes a `ReadProblem` that names the
file, the line and what is wrong. Every input row ends up either as a `Post` or as an error
problem (row skipped); a warning means the row was repaired and kept (the warning is also in
`Post.warnings`). In strict mode the first problem of either kind raises `ReadError`.

Conventions:
- Fields: id <- id | post_id | tweet_id, text <- text | tweet_text, image <- image | image_path,
  plus created_at, source and label (a CrisisMMD 8- or 5-class name, stored as one of the 5
  classes); names match case-insensitively, every other field goes to `Post.metadata`.
  A JSON id may be a string or an integer, never a float (tweet ids lose digits as floats).
- .csv is RFC 4180 (the delimiter is sniffed only when the header has no comma); .tsv is
  tab-separated with the same quoting; a broken quote (end of file inside quotes, text after a
  closing quote) is a row error, reported with the lines it took.
  A CrisisMMD task file (header with event_name, image_id, image) has no quoting (a quote is
  text) and one post per image: id = image_id; tweet_id and event_name go to metadata.
- Image paths are relative to the input file's folder, or to `image_root` (where a CrisisMMD
  `data_image/` prefix is dropped); after resolving links they must stay inside that folder.
  A folder input reads its own `ID.txt` / `ID.jpg` files, in id order, whatever `image_root`.
- Text that is empty or only whitespace counts as no text (`Post.text` is None).
- A post id is used once per read, across all inputs: the first row that was kept wins.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.labels import LABEL_NAMES, to_humanitarian5
from crisislens.runtime.preprocess import ImageError, check_image
from crisislens.runtime.schema import Post

JSONL_SUFFIXES = (".jsonl", ".ndjson")
TABLE_SUFFIXES = (".csv", ".tsv")
TEXT_SUFFIX = ".txt"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif")

Severity = Literal["error", "warning"]

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

_SNIFF_CHARS = 64 * 1024
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone surrogates: undecodable bytes or bad \u escapes
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # cheap pre-check before walking a JSON object
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")
_BAD_UTF8 = "invalid UTF-8 bytes replaced with U+FFFD"


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
class ReadReport:
    """Everything one read produced; `rows_seen` = posts + row errors (file errors have no rows)."""

    posts: list[Post] = field(default_factory=list)
    problems: list[ReadProblem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    rows_seen: int = 0

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
        }


def iter_posts(
    inputs: Iterable[str | Path] | str | Path,
    *,
    image_root: Path | str | None = None,
    strict: bool = False,
) -> Iterator[Post | ReadProblem]:
    """Stream posts and problems in input order; a post's warnings come just before it.

    Memory stays flat for big JSONL files (one line at a time; only the seen ids are kept).
    """
    yield from _checked(_Reader(image_root).read(_as_inputs(inputs)), strict)


def read_posts(
    inputs: Iterable[str | Path] | str | Path,
    *,
    image_root: Path | str | None = None,
    strict: bool = False,
    check_images: bool = False,
) -> ReadReport:
    """Read every input into one `ReadReport` (see `iter_posts`).

    `check_images`: also read each image's header (`preprocess.check_image`, no pixel decoded)
    and treat an image the model could not use like a missing one: the post is read as
    text-only with a warning, or is an error without text. Off for a run, which decodes every
    image anyway and reports what it could not use with the post; on for `crisislens validate`.
    """
    reader = _Reader(image_root, check_images)
    report = ReadReport()
    for item in _checked(reader.read(_as_inputs(inputs)), strict):
        if isinstance(item, Post):
            report.posts.append(item)
        else:
            report.problems.append(item)
    report.files = list(reader.files)
    report.rows_seen = reader.rows_seen
    return report


# --- internals ---------------------------------------------------------------------------


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


def _as_inputs(inputs: Iterable[str | Path] | str | Path) -> list[Path | str]:
    return [inputs] if isinstance(inputs, (str, Path)) else list(inputs)


def _checked(items: Iterator[Post | ReadProblem], strict: bool) -> Iterator[Post | ReadProblem]:
    for item in items:
        if strict and isinstance(item, ReadProblem):
            raise ReadError(item)
        yield item


class _Reader:
    """One read: the ids seen so far (duplicates are checked across all inputs) and counters."""

    def __init__(self, image_root: Path | str | None, check_images: bool = False):
        self.image_root = None if image_root is None else Path(image_root)
        self.check_images = check_images
        self.rows_seen = 0
        self.files: list[Path] = []
        self._first_seen: dict[str, tuple[str, int | None]] = {}
        self._read: set[Path] = set()

    def read(self, inputs: list[Path | str]) -> Iterator[Post | ReadProblem]:
        if self.image_root is not None and not self.image_root.is_dir():
            yield ReadProblem(str(self.image_root), None, "image root is not a folder; every image will be missing")
        for given in inputs:
            yield from self._read_input(Path(given), str(given))

    def _read_input(self, path: Path, display: str) -> Iterator[Post | ReadProblem]:
        if not _exists(path):
            yield ReadProblem(display, None, "no such file or folder")
            return
        resolved = path.resolve()
        if resolved in self._read:
            yield ReadProblem(display, None, "given twice; read once", "warning")
            return
        suffix = path.suffix.lower()
        source = path.name or resolved.name
        if path.is_dir():
            rows = self._folder(path, display, _Input(display, source, resolved))
        elif suffix in JSONL_SUFFIXES or suffix in TABLE_SUFFIXES:
            root = (self.image_root or path.parent).resolve()
            inp = _Input(display, source, root)
            rows = self._jsonl(path, inp) if suffix in JSONL_SUFFIXES else self._table(path, inp)
        else:
            yield ReadProblem(
                display,
                None,
                f"unknown input format {suffix or '(no extension)'!r}: expected .jsonl, .csv, .tsv "
                "or a folder of ID.txt + ID.jpg pairs",
            )
            return
        self._read.add(resolved)
        self.files.append(path)
        try:
            yield from rows
        except OSError as exc:  # unreadable file or a disk error mid-way: the rest of it is lost
            yield ReadProblem(display, None, f"cannot read: {exc.strerror or exc}")

    # -- formats ------------------------------------------------------------------------

    def _jsonl(self, path: Path, inp: _Input) -> Iterator[Post | ReadProblem]:
        with path.open("rb") as handle:  # bytes: a bad byte must cost one line, not the file
            for line_no, data in enumerate(handle, start=1):
                if line_no == 1:
                    data = data.removeprefix(codecs.BOM_UTF8)
                if data.strip():
                    yield from self._finish(_parse_json_line(data, inp.display, line_no), inp)

    def _table(self, path: Path, inp: _Input) -> Iterator[Post | ReadProblem]:
        # surrogateescape keeps undecodable bytes until the row is parsed, so each is reported
        # with its line and column, then replaced.
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            sample = handle.read(_SNIFF_CHARS)
            handle.seek(0)
            header_line = re.split(r"\r\n|\r|\n", sample, maxsplit=1)[0]
            dialect, crisismmd = _table_dialect(path.suffix.lower(), header_line, sample)
            # strict: a broken quote (EOF inside quotes, text after a closing quote) is a row
            # error, instead of quietly swallowing the rows after it into one field.
            reader = csv.reader(handle, dialect, strict=True)
            try:
                header = next(reader, None)
            except csv.Error as exc:
                yield ReadProblem(inp.display, 1, f"unreadable header row: {exc}")
                return
            if not header or not any(h.strip() for h in header):
                yield ReadProblem(inp.display, None, "empty file: a header row is required")
                return
            header = [_SURROGATE.sub("\ufffd", h).strip() or f"column_{i + 1}" for i, h in enumerate(header)]
            columns, problem = _table_columns(header, _CRISISMMD_ALIASES if crisismmd else _FIELD_ALIASES)
            if problem:
                yield ReadProblem(inp.display, 1, problem)
                return
            if crisismmd and self.image_root is not None:
                inp = replace(inp, strip_prefix=_CRISISMMD_IMAGE_PREFIX)
            while True:
                line_no = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    span = f" (lines {line_no}-{reader.line_num} taken as one row)" if reader.line_num > line_no else ""
                    yield from self._finish(_Raw(inp.display, line_no, error=f"unreadable row: {exc}{span}"), inp)
                    if reader.line_num < line_no:  # no progress: give up rather than loop
                        yield ReadProblem(inp.display, line_no, "cannot read past this row; rest of file skipped")
                        return
                    continue
                if row:  # [] is a blank line, skipped like in JSONL
                    yield from self._finish(_table_row(row, header, columns, inp.display, line_no), inp)

    def _folder(self, folder: Path, display: str, inp: _Input) -> Iterator[Post | ReadProblem]:
        groups: dict[str, tuple[list[Path], list[Path]]] = {}
        for entry in sorted(folder.iterdir(), key=lambda p: p.name):
            shown = str(Path(display) / entry.name)
            suffix = entry.suffix.lower()
            if entry.is_dir():
                yield ReadProblem(shown, None, "subfolder ignored (folders are not read recursively)", "warning")
            elif suffix == TEXT_SUFFIX or suffix in IMAGE_SUFFIXES:
                texts, images = groups.setdefault(entry.stem, ([], []))
                (texts if suffix == TEXT_SUFFIX else images).append(entry)
            else:
                hint = "; pass it as an input of its own to read it" if suffix in JSONL_SUFFIXES + TABLE_SUFFIXES else ""
                yield ReadProblem(shown, None, f"ignored: not a {TEXT_SUFFIX} or image file{hint}", "warning")
        for stem in sorted(groups):
            texts, images = groups[stem]
            yield from self._finish(_folder_row(stem, texts, images, display, inp.image_root), inp)

    # -- validation shared by all formats ---------------------------------------------------

    def _finish(self, raw: _Raw, inp: _Input) -> Iterator[Post | ReadProblem]:
        self.rows_seen += 1
        post_id = None
        try:
            if raw.error:
                raise _RowError(raw.error)
            post_id = _parse_id(raw.values.get("id"))
            first = self._first_seen.get(post_id)
            if first is not None:
                raise _RowError(f"duplicate id {_quoted(post_id)} (first seen at {_where(first, raw.file)})")
            fields = _post_fields(raw, inp, self.check_images)
            problems = [ReadProblem(raw.file, raw.line, w, "warning", post_id) for w in raw.warnings]
            origin = raw.file if raw.line is None else f"{raw.file}:{raw.line}"
            post = Post(id=post_id, **fields, warnings=tuple(str(p) for p in problems), origin=origin)
        except (_RowError, ValueError) as exc:
            yield ReadProblem(raw.file, raw.line, str(exc), "error", post_id)
            return
        self._first_seen[post_id] = (raw.file, raw.line)
        yield from problems
        yield post


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
        if ref is not None:
            image = _resolve_image(ref, inp)
    if image is not None and not _is_file(image):
        shown = str(ref) if isinstance(ref, str) else ref.name
        if text is None:
            raise _RowError(f"image {_quoted(shown)} not found and the post has no text")
        raw.warnings.append(f"image {_quoted(shown)} not found; read as text-only")
        image = None
    elif image is not None and check_images:
        try:
            check_image(image)
        except ImageError as exc:
            shown = str(ref) if isinstance(ref, str) else ref.name
            if text is None:
                raise _RowError(f"image {_quoted(shown)} cannot be used ({exc.problem}) and the post has no text") from None
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


# --- JSONL -----------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json_line(data: bytes, file: str, line: int) -> _Raw:
    warnings = []
    data = data.rstrip(b"\r\n")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", "replace")
        warnings.append(_BAD_UTF8)
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return _Raw(file, line, error=f"malformed JSON: {exc.msg.removesuffix(' at')} (column {exc.colno})")
    except RecursionError:
        return _Raw(file, line, error="malformed JSON: nested too deeply")
    except ValueError as exc:  # NaN/Infinity, integers too long to convert
        reason = "number too long" if "integer string conversion" in str(exc) else str(exc)
        return _Raw(file, line, error=f"malformed JSON: {reason}")
    if not isinstance(obj, dict):
        return _Raw(file, line, error=f"expected a JSON object, got {_json_type(obj)}")
    if _SURROGATE_ESCAPE.search(text) and _replace_surrogates(obj):
        warnings.append("invalid \\u escape (lone surrogate) replaced with U+FFFD")
    values, metadata = _split_fields(obj, _FIELD_ALIASES)
    return _Raw(file, line, values, metadata, warnings)


def _replace_surrogates(obj: dict[str, Any]) -> bool:
    """Replace lone surrogates in every string of `obj` in place (they cannot be written as
    UTF-8 later); iterative, so deep nesting cannot overflow the stack. True if any changed."""
    changed = False
    stack: list[dict[str, Any] | list[Any]] = [obj]
    while stack:
        node = stack.pop()
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        for key, value in items:
            if isinstance(value, str) and _SURROGATE.search(value):
                node[key] = _SURROGATE.sub("\ufffd", value)
                changed = True
            elif isinstance(value, (dict, list)):
                stack.append(value)
            if isinstance(key, str) and _SURROGATE.search(key):
                node[_SURROGATE.sub("\ufffd", key)] = node.pop(key)
                changed = True
    return changed


# --- CSV / TSV -------------------------------------------------------------------------


class _CrisisMMDDialect(csv.Dialect):
    """CrisisMMD task files: tab-separated, no quoting (tweets start with quotes)."""

    delimiter = "\t"
    quotechar = '"'
    doublequote = False
    skipinitialspace = False
    lineterminator = "\n"
    quoting = csv.QUOTE_NONE


def _table_dialect(suffix: str, header_line: str, sample: str) -> tuple[type[csv.Dialect] | csv.Dialect, bool]:
    """(dialect, is CrisisMMD); sniff only a .csv whose header has no comma."""
    if _CRISISMMD_MARKERS <= {name.strip().lower() for name in header_line.split("\t")}:
        return _CrisisMMDDialect, True
    if suffix == ".tsv":
        return csv.excel_tab, False
    if "," in header_line:
        return csv.excel, False
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|"), False
    except csv.Error:
        return csv.excel, False


def _table_columns(header: list[str], aliases: dict[str, tuple[str, ...]]) -> tuple[list[str | None], str | None]:
    """Canonical field of each column (None: metadata), or a problem with the header."""
    lowered = [name.lower() for name in header]
    duplicated = sorted({name for name in lowered if lowered.count(name) > 1})
    if duplicated:
        return [], f"duplicate column(s) in the header: {', '.join(duplicated)}"
    canonical = _assign_fields(header, aliases)
    found = set(canonical.values())
    if "id" not in found:
        return [], f"header has no id column (expected one of: {', '.join(aliases['id'])}); found: {', '.join(header)}"
    if not found & {"text", "image"}:
        expected = ", ".join(aliases["text"] + aliases["image"])
        return [], f"header has no text or image column (expected one of: {expected}); found: {', '.join(header)}"
    return [canonical.get(name) for name in header], None


def _table_row(row: list[str], header: list[str], columns: list[str | None], file: str, line: int) -> _Raw:
    if not any(cell.strip() for cell in row):
        return _Raw(file, line, error="empty row")
    if len(row) != len(header):
        return _Raw(file, line, error=f"row has {len(row)} fields; the header has {len(header)}")
    raw = _Raw(file, line)
    repaired = []
    for name, canonical, cell in zip(header, columns, row):
        if _SURROGATE.search(cell):
            cell = _SURROGATE.sub("\ufffd", cell)
            repaired.append(name)
        if canonical is None:
            raw.metadata[name] = cell
        else:
            raw.values[canonical] = cell
    if repaired:
        raw.warnings.append(f"{_BAD_UTF8} (column {', '.join(repaired)})")
    return raw


# --- folders of ID.txt + ID.jpg pairs ----------------------------------------------------


def _folder_row(stem: str, texts: list[Path], images: list[Path], display: str, root: Path) -> _Raw:
    first = (texts + images)[0]
    raw = _Raw(str(Path(display) / first.name), None)
    if _SURROGATE.search(stem):
        raw.error = "file name is not valid UTF-8; rename the file"
        return raw
    for kind, files in (("text", texts), ("image", images)):
        if len(files) > 1:
            raw.error = f"several {kind} files for id {_quoted(stem)}: {', '.join(f.name for f in files)}"
            return raw
    raw.values["id"] = stem
    try:
        if images:
            raw.values["image"] = _contained(images[0], root, images[0].name)
        if texts:
            text_path = _contained(texts[0], root, texts[0].name)
            raw.values["text"] = _read_text_file(text_path, raw.warnings)
    except _RowError as exc:
        raw.error = str(exc)
    except OSError as exc:
        raw.error = f"cannot read: {exc.strerror or exc}"
    return raw


def _read_text_file(path: Path, warnings: list[str]) -> str:
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", "replace")
        line = data.count(b"\n", 0, exc.start) + 1
        warnings.append(f"{_BAD_UTF8} (first at line {line})")
    return text.rstrip("\r\n")
