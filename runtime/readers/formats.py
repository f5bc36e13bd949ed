"""Parsing the three input formats into raw rows: a JSONL line, a CSV/TSV row (CrisisMMD's
dialect included), a folder's ID.txt + ID.jpg pair.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from crisislens.runtime.readers.fields import (
    _CRISISMMD_MARKERS,
    _FIELD_ALIASES,
    COLUMN_HINT,
    _assign_fields,
    _contained,
    _json_type,
    _quoted,
    _Raw,
    _RowError,
    _split_fields,
)
from crisislens.runtime.readers.tweets import tweet_rows, tweet_shape

_SURROGATE = re.compile("[\ud800-\udfff]")  # lone surrogates: undecodable bytes or bad \u escapes
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # cheap pre-check before walking a JSON object


_BAD_UTF8 = "invalid UTF-8 bytes replaced with U+FFFD"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _json_rows(data: bytes, file: str, line: int, root: Path, aliases: dict[str, tuple[str, ...]]) -> list[_Raw]:
    """The posts of one JSONL line: one, or a tweet archive's (a twarc2 page holds many)."""
    obj, raw = _load_json_line(data, file, line)
    if obj is None:
        return [raw]
    shape = tweet_shape(obj)
    if shape is None:
        raw.values, raw.metadata = _split_fields(obj, aliases)
        if not raw.values.keys() & {"id", "text", "image"}:
            raw.error = f"no id, text or image field (found: {_quoted(', '.join(obj), 200)}){COLUMN_HINT}"
        return [raw]
    rows = tweet_rows(obj, shape, file, line, root)
    for row in rows:
        row.warnings[:0] = raw.warnings
    return rows


def _parse_json_line(data: bytes, file: str, line: int) -> _Raw:
    obj, raw = _load_json_line(data, file, line)
    if obj is not None:
        raw.values, raw.metadata = _split_fields(obj, _FIELD_ALIASES)
    return raw


def _load_json_line(data: bytes, file: str, line: int) -> tuple[dict[str, Any] | None, _Raw]:
    """(the line's object, a row with the repairs so far), or (None, a row with the error)."""
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
        return None, _Raw(file, line, error=f"malformed JSON: {exc.msg.removesuffix(' at')} (column {exc.colno})")
    except RecursionError:
        return None, _Raw(file, line, error="malformed JSON: nested too deeply")
    except ValueError as exc:  # NaN/Infinity, integers too long to convert
        reason = "number too long" if "integer string conversion" in str(exc) else str(exc)
        return None, _Raw(file, line, error=f"malformed JSON: {reason}")
    if not isinstance(obj, dict):
        return None, _Raw(file, line, error=f"expected a JSON object, got {_json_type(obj)}")
    if _SURROGATE_ESCAPE.search(text) and _replace_surrogates(obj):
        warnings.append("invalid \\u escape (lone surrogate) replaced with U+FFFD")
    return obj, _Raw(file, line, warnings=warnings)


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
                node[key] = _SURROGATE.sub("\ufffd", value)  # type: ignore[index]
                changed = True
            elif isinstance(value, (dict, list)):
                stack.append(value)
            if isinstance(key, str) and _SURROGATE.search(key) and isinstance(node, dict):
                node[_SURROGATE.sub("\ufffd", key)] = node.pop(key)
                changed = True
    return changed


class _CrisisMMDDialect(csv.Dialect):
    """CrisisMMD task files and every .tsv: tab-separated, no quoting (tweets start with quotes)."""

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
    if suffix == ".tsv":  # tweets are not quoted data: a leading quote is text, not an open field
        return _CrisisMMDDialect, False
    if "," in header_line:
        return csv.excel, False
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|"), False
    except csv.Error:
        return csv.excel, False


MAX_RECORD_LINES = 300  # the most physical lines one quoted CSV field may span


class _LineReader:
    """`csv.reader(handle, dialect, strict=True)` that loses one physical line, not the rest of
    the file, to a stray quote: a record whose quote never closes (end of file, or more than
    `MAX_RECORD_LINES` lines), that has text after a closing quote, or that spans several lines
    without the header's field count raises `csv.Error` for its first line only, and reading
    resumes on the next line. `line_num` counts physical lines read, like csv.reader's."""

    def __init__(self, handle: Iterator[str], dialect: type[csv.Dialect] | csv.Dialect):
        self._source = iter(handle)
        self._again: list[str] = []  # lines read ahead by a bad record, to read again (reversed)
        self._dialect = dialect
        self._fields: int | None = None  # the header's field count: the first record's
        self.line_num = 0

    def __iter__(self) -> _LineReader:
        return self

    def _line(self) -> str | None:
        return self._again.pop() if self._again else next(self._source, None)

    def __next__(self) -> list[str]:
        first = self._line()
        if first is None:
            raise StopIteration
        taken = [first]

        def lines() -> Iterator[str]:
            yield first
            while len(taken) < MAX_RECORD_LINES and (line := self._line()) is not None:
                taken.append(line)
                yield line

        problem = None
        try:
            row = next(csv.reader(lines(), self._dialect, strict=True), [])
        except csv.Error as exc:
            problem = str(exc)
            if problem == "unexpected end of data":
                problem = "a quote opened on this line is never closed; the line is skipped"
        else:
            if len(taken) > 1 and self._fields is not None and len(row) != self._fields:
                problem = f"a quote opened on this line runs over {len(taken)} lines; the line is skipped"
        if problem is None:
            self.line_num += len(taken)
            if self._fields is None:
                self._fields = len(row)
            return row
        self._again.extend(reversed(taken[1:]))
        self.line_num += 1
        raise csv.Error(problem)


def _table_columns(header: list[str], aliases: dict[str, tuple[str, ...]]) -> tuple[list[str | None], str | None]:
    """Canonical field of each column (None: metadata), or a problem with the header."""
    lowered = [name.lower() for name in header]
    duplicated = sorted({name for name in lowered if lowered.count(name) > 1})
    if duplicated:
        return [], f"duplicate column(s) in the header: {', '.join(duplicated)}"
    canonical = _assign_fields(header, aliases)
    found = set(canonical.values())
    if "id" not in found:
        expected = ", ".join(aliases["id"])
        return [], f"header has no id column (expected one of: {expected}); found: {', '.join(header)}{COLUMN_HINT}"
    if not found & {"text", "image"}:
        expected = ", ".join(aliases["text"] + aliases["image"])
        found_names = ", ".join(header)
        problem = f"header has no text or image column (expected one of: {expected}); found: {found_names}"
        return [], problem + COLUMN_HINT
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
