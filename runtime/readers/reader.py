"""The table and folder readers (JSONL, CSV/TSV with CrisisMMD task files, folders of `ID.txt` +
`ID.jpg` pairs) and the entry points every input goes through. The reading contract (every row a
`Post` or a `ReadProblem` naming file, line and reason) is the package's: see `crisislens.runtime.readers`.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import crisislens.runtime.readers.telegram as telegram
import crisislens.runtime.readers.whatsapp as whatsapp
from crisislens.runtime.readers.detect import (
    EXPORTS,
    FOLDER,
    JSONL_SUFFIXES,
    TABLE_SUFFIXES,
    TELEGRAM,
    chat_files,
    detect,
)
from crisislens.runtime.readers.fields import (
    _CRISISMMD_ALIASES,
    _CRISISMMD_IMAGE_PREFIX,
    _FIELD_ALIASES,
    IMAGE_SUFFIXES,
    _exists,
    _Input,
    _parse_id,
    _post_fields,
    _quoted,
    _Raw,
    _RowError,
    _where,
    column_aliases,
)
from crisislens.runtime.readers.formats import (
    _SURROGATE,
    _folder_row,
    _json_rows,
    _LineReader,
    _table_columns,
    _table_dialect,
    _table_row,
)
from crisislens.runtime.readers.mojibake import REPAIRED, repair
from crisislens.runtime.readers.report import FileSummary, ReadError, ReadProblem, ReadReport
from crisislens.runtime.readers.seen import SeenIds
from crisislens.runtime.schema import Post

TEXT_SUFFIX = ".txt"


_SNIFF_CHARS = 64 * 1024


def iter_posts(
    inputs: Iterable[str | Path] | str | Path,
    *,
    image_root: Path | str | None = None,
    strict: bool = False,
    columns: dict[str, str] | None = None,
) -> Iterator[Post | ReadProblem]:
    """Stream posts and problems in input order; a post's warnings come just before it.

    Memory stays flat for big inputs: one line at a time, and the ids seen (for the duplicate
    check) are kept in a temporary SQLite file (`seen`), not in memory.
    `columns` names a table's or JSON object's own fields: {"id"|"text"|"image": name}.
    """
    yield from _checked(_Reader(image_root, columns=columns).read(_as_inputs(inputs)), strict)


def read_posts(
    inputs: Iterable[str | Path] | str | Path,
    *,
    image_root: Path | str | None = None,
    strict: bool = False,
    check_images: bool = False,
    columns: dict[str, str] | None = None,
) -> ReadReport:
    """Read every input into one `ReadReport` (see `iter_posts`).

    `check_images`: also read each image's header (`preprocess.check_image`, no pixel decoded)
    and treat an image the model could not use like a missing one: the post is read as
    text-only with a warning, or is an error without text. Off for a run, which decodes every
    image anyway and reports what it could not use with the post; on for `crisislens validate`.
    """
    reader = _Reader(image_root, check_images, columns)
    report = ReadReport()
    for item in _checked(reader.read(_as_inputs(inputs)), strict):
        if isinstance(item, Post):
            report.posts.append(item)
        else:
            report.problems.append(item)
    report.files = list(reader.files)
    report.rows_seen = reader.rows_seen
    report.inputs = list(reader.inputs)
    return report


def _as_inputs(inputs: Iterable[str | Path] | str | Path) -> list[Path | str]:
    return [inputs] if isinstance(inputs, (str, Path)) else list(inputs)


def _checked(items: Iterator[Post | ReadProblem], strict: bool) -> Iterator[Post | ReadProblem]:
    for item in items:
        if strict and isinstance(item, ReadProblem):
            raise ReadError(item)
        yield item


class _Reader:
    """One read: the ids seen so far (duplicates are checked across all inputs) and counters."""

    def __init__(
        self, image_root: Path | str | None, check_images: bool = False, columns: dict[str, str] | None = None
    ):
        self.image_root = None if image_root is None else Path(image_root)
        self.check_images = check_images
        self.aliases = column_aliases(columns, _FIELD_ALIASES)
        self.crisismmd_aliases = column_aliases(columns, _CRISISMMD_ALIASES)
        self.inputs: list[FileSummary] = []
        self._summary = FileSummary("", "")
        self.rows_seen = 0
        self.files: list[Path] = []
        self._seen = SeenIds()
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
        try:
            kind = detect(path)
        except OSError as exc:
            yield ReadProblem(display, None, f"cannot read: {exc.strerror or exc}")
            return
        root = resolved if path.is_dir() else (self.image_root or path.parent).resolve()
        inp = _Input(display, source, root)
        if kind in EXPORTS:
            rows = self._export(path, kind, inp)
        elif kind == FOLDER:
            rows = self._folder(path, display, inp)
        elif kind in ("csv", "tsv"):
            rows = self._table(path, inp)
        elif kind is not None:
            rows = self._jsonl(path, inp)
        else:
            yield ReadProblem(
                display,
                None,
                f"unknown input format {suffix or '(no extension)'!r}: expected .jsonl (tweet archives included), "
                ".csv, .tsv, a Telegram result.json, a WhatsApp chat .txt, or a folder (of ID.txt + ID.jpg pairs, "
                "a Telegram export, a WhatsApp export)",
            )
            return
        self._read.add(resolved)
        self.files.append(path)
        self._summary = FileSummary(display, kind)
        self.inputs.append(self._summary)
        try:
            yield from rows
        except OSError as exc:  # unreadable file or a disk error mid-way: the rest of it is lost
            yield ReadProblem(display, None, f"cannot read: {exc.strerror or exc}")

    # -- formats ------------------------------------------------------------------------

    def _jsonl(self, path: Path, inp: _Input) -> Iterator[Post | ReadProblem]:
        empty = True
        with path.open("rb") as handle:  # bytes: a bad byte must cost one line, not the file
            for line_no, data in enumerate(handle, start=1):
                if line_no == 1:
                    data = data.removeprefix(codecs.BOM_UTF8)
                if not data.strip():
                    continue
                empty = False
                rows = _json_rows(data, inp.display, line_no, inp.image_root, self.aliases)
                if not rows:
                    yield ReadProblem(inp.display, line_no, "a page without tweets", "warning")
                for raw in rows:
                    yield from self._finish(raw, inp)
        if empty:  # like a CSV without its header: an input that holds no post is an error, not silence
            yield ReadProblem(inp.display, None, "empty file: no posts (not one JSON line)")

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
            reader = _LineReader(handle, dialect)
            try:
                header = next(reader, None)
            except csv.Error as exc:
                yield ReadProblem(inp.display, 1, f"unreadable header row: {exc}")
                return
            if not header or not any(h.strip() for h in header):
                yield ReadProblem(inp.display, None, "empty file: a header row is required")
                return
            header = [_SURROGATE.sub("\ufffd", h).strip() or f"column_{i + 1}" for i, h in enumerate(header)]
            columns, problem = _table_columns(header, self.crisismmd_aliases if crisismmd else self.aliases)
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
            elif not entry.is_file():  # a FIFO or a device would block the read forever
                yield ReadProblem(shown, None, "ignored: not a regular file (a pipe, socket or device)", "warning")
            elif suffix == TEXT_SUFFIX or suffix in IMAGE_SUFFIXES:
                texts, images = groups.setdefault(entry.stem, ([], []))
                (texts if suffix == TEXT_SUFFIX else images).append(entry)
            else:
                hint = (
                    "; pass it as an input of its own to read it" if suffix in JSONL_SUFFIXES + TABLE_SUFFIXES else ""
                )
                yield ReadProblem(shown, None, f"ignored: not a {TEXT_SUFFIX} or image file{hint}", "warning")
        for stem in sorted(groups):
            texts, images = groups[stem]
            yield from self._finish(_folder_row(stem, texts, images, display, inp.image_root), inp)

    def _export(self, path: Path, kind: str, inp: _Input) -> Iterator[Post | ReadProblem]:
        """A Telegram or WhatsApp export: the folder, or its result.json / chat .txt."""
        if kind == TELEGRAM:
            file = path / telegram.RESULT_JSON if path.is_dir() else path
            shown = str(Path(inp.display) / file.name) if path.is_dir() else inp.display
            if not file.is_file():  # only messages.html
                html = "a Telegram export in HTML: export it again as 'Machine-readable JSON'"
                yield ReadProblem(inp.display, None, html)
                return
            try:
                doc = telegram.load(file.read_bytes())
            except telegram.TelegramError as exc:
                yield ReadProblem(shown, None, f"not a readable Telegram export: {exc}")
                return
            items = telegram.message_rows(doc, shown)
            chats = [(shown, items, "service message(s) (joins, pins, calls): not posts")]
        else:
            files = chat_files(path) if path.is_dir() else [path]
            chats = []
            for file in files:
                shown = str(Path(inp.display) / file.name) if path.is_dir() else inp.display
                data = file.read_bytes().removeprefix(codecs.BOM_UTF8)
                text = data.decode("utf-8", "replace")
                if "\ufffd" in text and "\ufffd" not in data.decode("utf-8", "ignore"):
                    yield ReadProblem(shown, None, "invalid UTF-8 bytes replaced with U+FFFD", "warning")
                lines = re.split(r"\r\n|\n|\r", text)
                rows = whatsapp.message_rows(lines, shown, whatsapp.chat_name(file))
                chats.append((shown, rows, "line(s) of the app's own (no sender): not posts"))
        for shown, items, what in chats:
            for item in items:
                if isinstance(item, int):
                    yield ReadProblem(shown, None, f"{item} {what}; skipped", "warning")
                else:
                    yield from self._finish(item, inp)

    # -- validation shared by all formats ---------------------------------------------------

    def _finish(self, raw: _Raw, inp: _Input) -> Iterator[Post | ReadProblem]:
        self.rows_seen += 1
        post_id = None
        try:
            if raw.error:
                raise _RowError(raw.error)
            post_id = _parse_id(raw.values.get("id"))
            first = self._seen.first(post_id)
            if first is not None:
                raise _RowError(f"duplicate id {_quoted(post_id)} (first seen at {_where(first, raw.file)})")
            fields = _post_fields(raw, inp, self.check_images)
            text = fields["text"]
            repaired = repair(text) if text is not None else None
            if repaired != text:  # the store keeps what the input held
                fields.update(text=repaired, original_text=text)
                raw.warnings.append(REPAIRED)
            problems = [ReadProblem(raw.file, raw.line, w, "warning", post_id) for w in raw.warnings]
            origin = raw.file if raw.line is None else f"{raw.file}:{raw.line}"
            post = Post(id=post_id, **fields, warnings=tuple(str(p) for p in problems), origin=origin)
        except (_RowError, ValueError) as exc:
            self._summary.errors += 1
            self._summary.not_cached += raw.uncached
            yield ReadProblem(raw.file, raw.line, str(exc), "error", post_id)
            return
        self._summary.posts += 1
        self._summary.photos += post.image is not None
        self._summary.not_cached += raw.uncached
        self._seen.add(post_id, raw.file, raw.line)
        yield from problems
        yield post
