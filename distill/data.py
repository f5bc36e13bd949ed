"""The training data layer: read every labelled source under the data root as `Example`s.

Sources (see ../shared/data/README.md), each mapped onto the 5 CrisisMMD humanitarian classes
of `crisislens.runtime.labels`:

- ``crisismmd``      CrisisMMD v2.0 humanitarian task, text + image (the benchmark: dev/test
                     are the evaluation sets, nothing else may leak into them).
- ``humaid``         HumAID, text only, 10 classes -> 5 (`HUMAID_TO_5`).
- ``rationales``     Nguyen & Rudra (WWW 2022) tweets with human rationale substrings
                     (`RATIONALE_TO_5`), turned into token masks by `rationale_token_mask`.
- ``images``         labelled crisis photos, image only (MEDIC / CrisisMMD image labels).
- ``crisislex_t26``  CrisisLexT26, text only, information types -> 5 (`CRISISLEX_TO_5`).

Loaders are strict by default: a row they cannot map raises `DataError` naming the file and
line. With ``strict=False`` they skip such rows instead and record them in a `LoadReport`
(what `crisislens data check` shows). The data files are never copied into the repository
(licences): everything is read from the data root at run time.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crisislens.runtime.errors import DataRootError
from crisislens.runtime.labels import LABEL_NAMES, MEDIC_TO_5, medic_label, to_humanitarian5  # noqa: F401 (re-exported)
from crisislens.runtime.settings import ENV_DATA_ROOT  # noqa: F401  (re-exported: the variable the data root is read from)

if TYPE_CHECKING:
    from crisislens.runtime.schema import Post


SOURCES = ("crisismmd", "humaid", "rationales", "images", "crisislex_t26")
SPLITS = ("train", "dev", "test")
_MAX_MESSAGES = 200  # per report list: a broken file must not produce a 70k-line report


# ----------------------------------------------------------------------------- label tables

# HumAID's 10 humanitarian classes (+ "dont_know_cant_judge") -> the 5 CrisisMMD classes.
# A design choice, following the spirit of the CrisisMMD 8 -> 5 merge: everything about
# people (hurt, missing, displaced) is "affected individuals"; a request for help is the
# other side of a rescue/donation effort; advice and sympathy are crisis-related but not
# actionable. `None` = the row is dropped (and counted): the annotators could not judge it.
HUMAID_TO_5: dict[str, str | None] = {
    "injured_or_dead_people": "affected_individuals",
    "missing_or_found_people": "affected_individuals",
    "displaced_people_and_evacuations": "affected_individuals",
    "requests_or_urgent_needs": "rescue_volunteering_or_donation_effort",
    "rescue_volunteering_or_donation_effort": "rescue_volunteering_or_donation_effort",
    "infrastructure_and_utility_damage": "infrastructure_and_utility_damage",
    "caution_and_advice": "other_relevant_information",
    "sympathy_and_support": "other_relevant_information",
    "other_relevant_information": "other_relevant_information",
    "not_humanitarian": "not_humanitarian",
    "dont_know_cant_judge": None,
}

# The rationale sets' 6 gold classes (`corrected_label`; they differ per event: Nepal has
# injured_or_dead_people, Hagupit has caution_and_advice) -> the 5 CrisisMMD classes.
RATIONALE_TO_5: dict[str, str] = {
    "rescue_volunteering_and_donation_effort": "rescue_volunteering_or_donation_effort",
    "affected_people_and_evacuations": "affected_individuals",
    "injured_or_dead_people": "affected_individuals",
    "infrastructure_and_utilities_damage": "infrastructure_and_utility_damage",
    "other_useful_information": "other_relevant_information",
    "caution_and_advice": "other_relevant_information",
    "not_related_or_irrelevant": "not_humanitarian",
}

# CrisisLexT26 "Information Type" (keys compared lower-cased) -> the 5 CrisisMMD classes.
# "Not labeled" is resolved by the Informativeness column in `crisislex_label`: "Not related"
# -> not_humanitarian, anything else -> None (unlabelled: kept, but out of training/eval).
CRISISLEX_TO_5: dict[str, str | None] = {
    "affected individuals": "affected_individuals",
    "infrastructure and utilities": "infrastructure_and_utility_damage",
    "donations and volunteering": "rescue_volunteering_or_donation_effort",
    "caution and advice": "other_relevant_information",
    "sympathy and support": "other_relevant_information",
    "other useful information": "other_relevant_information",
    "not applicable": "not_humanitarian",
    "not labeled": None,
}


def humaid_label(raw: str) -> str | None:
    """The 5-class label of a HumAID class (None = drop the row); KeyError if unknown."""
    return HUMAID_TO_5[raw.strip().lower()]


def rationale_label(raw: str) -> str:
    """The 5-class label of a rationale-set `corrected_label`; KeyError if unknown."""
    return RATIONALE_TO_5[raw.strip().lower()]


def crisislex_label(information_type: str, informativeness: str) -> str | None:
    """The 5-class label of a CrisisLexT26 row (None = unlabelled); KeyError if unknown."""
    label = CRISISLEX_TO_5[information_type.strip().lower()]
    if label is None and informativeness.strip().lower() == "not related":
        return "not_humanitarian"
    return label


# ----------------------------------------------------------------------------- types


class DataError(ValueError):
    """A data file (or row) that cannot be read as documented; the message names it."""


@dataclass(frozen=True)
class Example:
    """One labelled training/evaluation item: text, image, or both.

    `id` is unique within its `source`; `image` is an absolute path to an existing file or
    None; `label` is one of the 5 `LABEL_NAMES` or None (unlabelled); `raw_label` is the
    source's own label; `rationale` holds human rationale substrings of `text` (may be empty).
    """

    id: str
    text: str | None
    image: Path | None
    label: str | None
    source: str
    split: str | None = None
    event: str | None = None
    raw_label: str | None = None
    tweet_id: str | None = None
    rationale: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.label is not None and self.label not in LABEL_NAMES:
            raise ValueError(f"{self.source}/{self.id}: label {self.label!r} is not one of {LABEL_NAMES}")

    @property
    def key(self) -> tuple[str, str]:
        """(source, id): unique across all sources."""
        return (self.source, self.id)

    def to_post(self) -> Post:
        """The runtime's `Post` for this example (what the backends and store consume)."""
        from crisislens.runtime.schema import Post

        metadata = dict(self.meta)
        metadata.update(split=self.split, event=self.event, raw_label=self.raw_label, tweet_id=self.tweet_id)
        return Post(id=f"{self.source}/{self.id}", text=self.text, image=self.image, source=self.source,
                    label=self.label, metadata=metadata)


@dataclass
class LoadReport:
    """What a loader saw: rows read, rows dropped (by reason), problems and warnings.

    `problems` are rows that could not be used as documented (unknown label, malformed row,
    missing file); `warnings` are rows used with a caveat (invalid UTF-8 replaced, unusable
    tweet id, ...). Both are "file:line: what" strings; only the first few hundred are kept.
    """

    source: str
    files: list[str] = field(default_factory=list)
    rows: int = 0
    dropped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    n_problems: int = 0
    n_warnings: int = 0
    non_utf8_lines: int = 0

    def problem(self, message: str) -> None:
        self.n_problems += 1
        if len(self.problems) < _MAX_MESSAGES:
            self.problems.append(message)

    def warning(self, message: str) -> None:
        self.n_warnings += 1
        if len(self.warnings) < _MAX_MESSAGES:
            self.warnings.append(message)


def _fail(report: LoadReport, strict: bool, message: str, reason: str) -> None:
    """A row that cannot be used: raise when strict, else drop it and record why."""
    if strict:
        raise DataError(message)
    report.problem(message)
    report.dropped[reason] += 1


# ----------------------------------------------------------------------------- data root


def resolve_data_root(arg: str | Path | None = None) -> Path:
    """The data root: `arg` > $CRISISLENS_DATA > ../shared/data next to the repository, by the
    one resolver every command uses (`crisislens.runtime.settings`). Raises `DataRootError`
    naming the path(s) when none exists."""
    from crisislens.runtime.settings import data_root

    return data_root(arg)


# ----------------------------------------------------------------------------- file reading



def cli_data_root(arg: str | Path | None):
    """`resolve_data_root` for a command: a missing root becomes the CLI's usage error."""
    from crisislens.runtime.cli import CliError

    try:
        return resolve_data_root(arg)
    except DataRootError as exc:
        raise CliError(str(exc)) from None

def read_text_file(path: Path, report: LoadReport | None = None) -> str:
    """The file's text as UTF-8 (a BOM is dropped); invalid bytes become U+FFFD.

    Each line with invalid bytes is counted in `report.non_utf8_lines` and named in a warning.
    """
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines = data.split(b"\n")
    out = []
    for number, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(raw.decode("utf-8", errors="replace"))
            if report is not None:
                report.non_utf8_lines += 1
                report.warning(f"{path}:{number}: not valid UTF-8; bad bytes replaced with U+FFFD")
    return "\n".join(out)


def _rows(path: Path, report: LoadReport, *, tsv: bool) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) for each data row after the header (header checked by caller)."""
    text = read_text_file(path, report)
    if tsv:  # the TSVs are unquoted: a '"' inside a tweet is a character, not a quote
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
    for fields in reader:
        yield reader.line_num, fields


def _header(path: Path, rows: Iterable[tuple[int, list[str]]], required: Sequence[str]) -> tuple[dict[str, int], Iterable]:
    """Map column names (stripped: CrisisLex has ' Tweet Text') to positions; check `required`."""
    it = iter(rows)
    try:
        _, header = next(it)
    except StopIteration:
        raise DataError(f"{path}: empty file (expected a header with {', '.join(required)})") from None
    columns = {name.strip(): i for i, name in enumerate(header)}
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {', '.join(missing)}; header is {header}")
    return columns, it


def _records(path: Path, report: LoadReport, strict: bool, *, tsv: bool, required: Sequence[str],
             strip: bool = False) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, {column: value}) per data row; blank lines skipped, rows of the wrong width
    dropped (or raised when strict) with the file and line named, every row counted."""
    columns, rows = _header(path, _rows(path, report, tsv=tsv), required)
    kind = "tab-separated columns" if tsv else "columns"
    for line, fields in rows:
        if not fields or fields == [""]:
            continue
        report.rows += 1
        if len(fields) != len(columns):
            _fail(report, strict, f"{path}:{line}: expected {len(columns)} {kind}, got {len(fields)}", "malformed_row")
            continue
        yield line, {name: (fields[i].strip() if strip else fields[i]) for name, i in columns.items()}


def _clean_text(value: str) -> str | None:
    value = value.strip()
    return value or None


def _existing(path: Path) -> Path | None:
    return path.resolve() if path.is_file() else None


def _choose(events: Iterable[str] | None, available: Sequence[str], what: str) -> list[str]:
    if events is None:
        return list(available)
    chosen = [events] if isinstance(events, str) else list(events)
    unknown = [e for e in chosen if e not in available]
    if unknown:
        raise ValueError(f"unknown {what} event(s) {', '.join(unknown)}; available: {', '.join(available)}")
    return chosen


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


# ----------------------------------------------------------------------------- CrisisMMD

CRISISMMD_COLUMNS = ("event_name", "tweet_id", "image_id", "tweet_text", "image", "label")


def crisismmd_path(root: Path, split: str, task: str = "humanitarian") -> Path:
    if task != "humanitarian":
        raise ValueError(f"unsupported CrisisMMD task {task!r}: only 'humanitarian' maps to the 5 classes")
    _check_split(split)
    return Path(root) / "crisismmd" / f"task_humanitarian_text_img_agreed_lab_{split}.tsv"


def crisismmd_image_path(root: Path, image_column: str) -> Path:
    """Where a CrisisMMD `image` column value lives under the data root (may not exist)."""
    rel = image_column.strip()
    if rel.startswith("data_image/"):
        rel = rel[len("data_image/"):]
    return Path(root) / "images" / "crisismmd" / rel


def load_crisismmd(
    root: str | Path,
    split: str,
    task: str = "humanitarian",
    *,
    strict: bool = True,
    report: LoadReport | None = None,
) -> list[Example]:
    """CrisisMMD v2.0 humanitarian task, one Example per tweet-image pair (id = image_id).

    The 8 labels are merged into 5 with `to_humanitarian5`. `image` is set only when the file
    exists (only srilanka_floods images are available); every other row is text-only.
    """
    root = Path(root)
    path = crisismmd_path(root, split, task)
    report = report if report is not None else LoadReport("crisismmd")
    if not path.is_file():
        raise DataError(f"{path}: CrisisMMD {split} file not found")
    report.files.append(str(path))
    out: list[Example] = []
    seen: set[str] = set()
    for line, row in _records(path, report, strict, tsv=True, required=CRISISMMD_COLUMNS):
        raw = row["label"].strip()
        try:
            label = to_humanitarian5(raw)
        except ValueError:
            _fail(report, strict, f"{path}:{line}: unknown CrisisMMD humanitarian label {raw!r}", "unknown_label")
            continue
        image_id = row["image_id"].strip()
        if not image_id or image_id in seen:
            _fail(report, strict, f"{path}:{line}: empty or duplicate image_id {image_id!r}", "duplicate_id")
            continue
        seen.add(image_id)
        image = _existing(crisismmd_image_path(root, row["image"])) if row["image"].strip() else None
        meta = {k: row[k] for k in ("label_text", "label_image", "label_text_image") if k in row}
        meta["image_column"] = row["image"].strip()
        out.append(
            Example(
                id=image_id,
                text=_clean_text(row["tweet_text"]),
                image=image,
                label=label,
                source="crisismmd",
                split=split,
                event=row["event_name"].strip() or None,
                raw_label=raw,
                tweet_id=row["tweet_id"].strip() or None,
                meta=meta,
            )
        )
    return out


# ----------------------------------------------------------------------------- HumAID


def humaid_events(root: str | Path) -> dict[str, Path]:
    """HumAID event name -> its folder (events_set1 and events_set2)."""
    base = Path(root) / "humaid"
    events: dict[str, Path] = {}
    for set_dir in sorted(base.glob("events_set*")):
        for event_dir in sorted(p for p in set_dir.iterdir() if p.is_dir()):
            events[event_dir.name] = event_dir
    return events


def load_humaid(
    root: str | Path,
    split: str | None = None,
    events: Iterable[str] | None = None,
    *,
    strict: bool = True,
    report: LoadReport | None = None,
) -> list[Example]:
    """HumAID tweets (text only) from the per-event files, labels mapped by `HUMAID_TO_5`.

    `split` None reads train, dev and test; `events` None reads all 19 events.
    dont_know_cant_judge rows are dropped (counted in `report.dropped`). Note: the id-only
    `all_combined/` lists ~2.3k more tweets than the event files, which have no text here.
    """
    root = Path(root)
    report = report if report is not None else LoadReport("humaid")
    available = humaid_events(root)
    if not available:
        raise DataError(f"{root / 'humaid'}: no HumAID event folders (expected events_set1/<event>/...)")
    splits = list(SPLITS) if split is None else [split]
    for s in splits:
        _check_split(s)
    out: list[Example] = []
    seen: set[str] = set()
    for event in _choose(events, sorted(available), "HumAID"):
        for s in splits:
            path = available[event] / f"{event}_{s}.tsv"
            if not path.is_file():
                _fail(report, strict, f"{path}: HumAID file not found", "missing_file")
                continue
            report.files.append(str(path))
            records = _records(path, report, strict, tsv=True, required=("tweet_id", "tweet_text", "class_label"), strip=True)
            for line, row in records:
                tweet_id, text, raw = row["tweet_id"], row["tweet_text"], row["class_label"]
                try:
                    label = humaid_label(raw)
                except KeyError:
                    _fail(report, strict,
                          f"{path}:{line}: unknown HumAID label {raw!r}; expected one of {', '.join(HUMAID_TO_5)}",
                          "unknown_label")
                    continue
                if label is None:
                    report.dropped[raw] += 1
                    continue
                if not tweet_id or tweet_id in seen:
                    _fail(report, strict, f"{path}:{line}: empty or duplicate tweet_id {tweet_id!r}", "duplicate_id")
                    continue
                seen.add(tweet_id)
                out.append(Example(id=tweet_id, text=text or None, image=None, label=label, source="humaid",
                                   split=s, event=event, raw_label=raw, tweet_id=tweet_id))
    return out


# ----------------------------------------------------------------------------- rationales

_RATIONALE_FILE = re.compile(r"^(?P<year>\d{4})_(?P<name>.+?)_en_CF_labeled_data_final2\.csv$")
_COUNTRIES = ("philippines_",)  # file names carry a country the README's event names do not


def rationale_event_name(path: str | Path) -> str:
    """Event name of a rationale file: '2015_Nepal_Earthquake_en_CF…' -> 'nepal_earthquake_2015'."""
    name = Path(path).name
    match = _RATIONALE_FILE.match(name)
    if not match:
        return Path(path).stem.lower()
    event = match["name"].lower()
    for prefix in _COUNTRIES:
        if event.startswith(prefix):
            event = event[len(prefix):]
    return f"{event}_{match['year']}"


def rationale_files(root: str | Path) -> dict[str, Path]:
    """Rationale event name -> its `*_final2.csv` file."""
    return {rationale_event_name(p): p for p in sorted((Path(root) / "rationales").glob("*_final2.csv"))}


def split_rationale(informative_content: str) -> tuple[str, ...]:
    """`informative_content` -> rationale substrings (split on [SEP], stripped, empties dropped)."""
    return tuple(part.strip() for part in informative_content.split("[SEP]") if part.strip())


def load_rationales(
    root: str | Path,
    events: Iterable[str] | None = None,
    *,
    strict: bool = True,
    report: LoadReport | None = None,
) -> list[Example]:
    """Tweets with human rationales (Nguyen & Rudra 2022); gold = `corrected_label`.

    id = "<event>/<tweet_id>" (the trailing "'" stripped). A few Hagupit ids were mangled by a
    spreadsheet ("5.41E+17"): those rows keep `tweet_id=None`, id "<event>/line<N>" and a
    warning. Hagupit's rare second annotation (corrected_label_1, informative_content_1) is
    kept in `meta`, not used.
    """
    root = Path(root)
    report = report if report is not None else LoadReport("rationales")
    available = rationale_files(root)
    if not available:
        raise DataError(f"{root / 'rationales'}: no *_final2.csv rationale files")
    out: list[Example] = []
    for event in _choose(events, sorted(available), "rationale"):
        path = available[event]
        report.files.append(str(path))
        seen: set[str] = set()
        required = ("tweet_id", "tweet_text", "corrected_label", "informative_content")
        for line, row in _records(path, report, strict, tsv=False, required=required):
            raw = row["corrected_label"].strip()
            try:
                label = rationale_label(raw)
            except KeyError:
                _fail(report, strict,
                      f"{path}:{line}: unknown rationale label {raw!r}; expected one of {', '.join(RATIONALE_TO_5)}",
                      "unknown_label")
                continue
            tweet_id: str | None = row["tweet_id"].strip().rstrip("'")
            if not tweet_id or not tweet_id.isdigit():
                report.warning(f"{path}:{line}: unusable tweet_id {row['tweet_id']!r}; kept without a tweet id")
                tweet_id = None
            ex_id = f"{event}/{tweet_id}" if tweet_id else f"{event}/line{line}"
            if ex_id in seen:
                _fail(report, strict, f"{path}:{line}: duplicate tweet_id {tweet_id!r}", "duplicate_id")
                continue
            seen.add(ex_id)
            meta = {"crowd_label": row.get("label", "").strip() or None,
                    "confusing_cases": row.get("confusing_cases", "").strip() or None}
            for extra in ("corrected_label_1", "informative_content_1"):
                if row.get(extra, "").strip():
                    meta[extra] = row[extra].strip()
            out.append(Example(id=ex_id, text=_clean_text(row["tweet_text"]), image=None, label=label,
                               source="rationales", event=event, raw_label=raw, tweet_id=tweet_id,
                               rationale=split_rationale(row["informative_content"]), meta=meta))
    return out


# ----------------------------------------------------------------------------- labelled images


def crisismmd_eval_images(root: str | Path) -> tuple[dict[str, str], set[str]]:
    """CrisisMMD dev/test: relative image path (under images/crisismmd/) -> split, and tweet ids.

    Empty when the CrisisMMD files are absent.
    """
    root = Path(root)
    by_image: dict[str, str] = {}
    tweets: set[str] = set()
    for split in ("dev", "test"):
        path = crisismmd_path(root, split)
        if not path.is_file():
            continue
        for ex in load_crisismmd(root, split, strict=False):
            rel = ex.meta["image_column"].removeprefix("data_image/")
            by_image[rel] = split
            if ex.tweet_id:
                tweets.add(ex.tweet_id)
    return by_image, tweets


def _tweet_id_from_file(path: str) -> str | None:
    stem = Path(path).stem.split("_")[0]
    return stem if stem.isdigit() else None


def load_labelled_images(
    root: str | Path,
    *,
    exclude_crisismmd_eval: bool = True,
    strict: bool = True,
    report: LoadReport | None = None,
) -> list[Example]:
    """Image-only Examples from `images/image_labels.tsv` that carry a humanitarian label.

    Label: the CrisisMMD image label (`crisismmd_humanitarian_image`, via `to_humanitarian5`)
    when present, else the MEDIC one (`medic_humanitarian`, via `MEDIC_TO_5`); `meta` keeps
    both. `split` is the MEDIC split; `meta["crisismmd_agreed_split"]` the CrisisMMD one.

    Leakage risk: the srilanka_floods photos ARE CrisisMMD images, some of them in the
    CrisisMMD dev/test benchmark. With `exclude_crisismmd_eval` (the default) a photo is
    dropped when its `crisismmd_agreed_split` names dev or test, when it is the image of a
    CrisisMMD humanitarian dev/test row, or when it belongs to a dev/test tweet. Only turn it
    off to evaluate on these images.
    """
    root = Path(root)
    report = report if report is not None else LoadReport("images")
    path = root / "images" / "image_labels.tsv"
    if not path.is_file():
        raise DataError(f"{path}: image label file not found")
    report.files.append(str(path))
    eval_images, eval_tweets = crisismmd_eval_images(root) if exclude_crisismmd_eval else ({}, set())
    required = ("relpath", "event", "medic_humanitarian", "crisismmd_humanitarian_image")
    out: list[Example] = []
    seen: set[str] = set()
    for line, row in _records(path, report, strict, tsv=True, required=required, strip=True):
        relpath = row["relpath"]
        medic, mmd = row["medic_humanitarian"], row["crisismmd_humanitarian_image"]
        if not medic and not mmd:
            report.dropped["no_humanitarian_label"] += 1
            continue
        try:
            label = to_humanitarian5(mmd) if mmd else medic_label(medic)
        except (KeyError, ValueError):
            _fail(report, strict, f"{path}:{line}: unknown humanitarian image label {(mmd or medic)!r}", "unknown_label")
            continue
        image = _existing(root / "images" / relpath)
        if image is None:
            _fail(report, strict, f"{path}:{line}: image file {root / 'images' / relpath} not found", "missing_image")
            continue
        if relpath in seen:
            _fail(report, strict, f"{path}:{line}: duplicate relpath {relpath!r}", "duplicate_id")
            continue
        seen.add(relpath)
        agreed = row.get("crisismmd_agreed_split", "")
        tweet_id = _tweet_id_from_file(relpath)
        if exclude_crisismmd_eval:
            in_eval = (
                any(s in ("dev", "test") for s in agreed.split(";"))
                or relpath.removeprefix("crisismmd/") in eval_images
                or (row.get("source_dataset", "").startswith("CrisisMMD") and tweet_id in eval_tweets)
            )
            if in_eval:
                report.dropped["crisismmd_eval_image"] += 1
                continue
        meta = {k: row[k] for k in row if k.startswith(("medic_", "crisismmd_")) and row[k]}
        meta.update(relpath=relpath, source_dataset=row.get("source_dataset") or None,
                    label_from="crisismmd" if mmd else "medic")
        out.append(Example(id=relpath, text=None, image=image, label=label, source="images",
                           split=row.get("medic_split") or None, event=row["event"] or None,
                           raw_label=mmd or medic, tweet_id=tweet_id, meta=meta))
    return out


# ----------------------------------------------------------------------------- CrisisLexT26


def load_crisislex(
    root: str | Path,
    events: Iterable[str] | None = None,
    *,
    strict: bool = True,
    report: LoadReport | None = None,
) -> list[Example]:
    """CrisisLexT26 tweets (text only), labels by `crisislex_label` (None = unlabelled).

    id = "<event>/<tweet_id>". Meant for zero-shot evaluation on unseen events or as extra
    training text; unlabelled rows stay in the list so that callers see them, with label None.
    """
    root = Path(root)
    report = report if report is not None else LoadReport("crisislex_t26")
    base = root / "crisislex_t26"
    available = {p.parent.name: p for p in sorted(base.glob("*/*-tweets_labeled.csv"))}
    if not available:
        raise DataError(f"{base}: no <event>/<event>-tweets_labeled.csv files")
    out: list[Example] = []
    seen: set[str] = set()
    for event in _choose(events, sorted(available), "CrisisLexT26"):
        path = available[event]
        report.files.append(str(path))
        required = ("Tweet ID", "Tweet Text", "Information Type", "Informativeness")
        for line, row in _records(path, report, strict, tsv=False, required=required, strip=True):
            info_type, informativeness = row["Information Type"], row["Informativeness"]
            try:
                label = crisislex_label(info_type, informativeness)
            except KeyError:
                _fail(report, strict,
                      f"{path}:{line}: unknown CrisisLex information type {info_type!r}; "
                      f"expected one of {', '.join(CRISISLEX_TO_5)} (any case)", "unknown_label")
                continue
            tweet_id = row["Tweet ID"].strip().strip('"')
            ex_id = f"{event}/{tweet_id}"
            if not tweet_id or ex_id in seen:
                _fail(report, strict, f"{path}:{line}: empty or duplicate tweet id {tweet_id!r}", "duplicate_id")
                continue
            seen.add(ex_id)
            meta = {"informativeness": informativeness or None,
                    "information_source": row.get("Information Source") or None}
            out.append(Example(id=ex_id, text=row["Tweet Text"] or None, image=None, label=label,
                               source="crisislex_t26", event=event, raw_label=info_type,
                               tweet_id=tweet_id if tweet_id.isdigit() else None, meta=meta))
    return out


# ----------------------------------------------------------------------------- rationale masks


@dataclass(frozen=True)
class RationaleSpans:
    """Character spans of the rationale substrings found in a text, and those not found."""

    spans: tuple[tuple[int, int], ...]
    unmatched: tuple[str, ...]

    @property
    def n_matched(self) -> int:
        return len(self.spans)


def _lower_same_length(text: str) -> str:
    # str.lower() can change the length ('İ' -> 'i̇'); keep indexes aligned with the original
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def _collapse_whitespace(text: str) -> tuple[str, list[int]]:
    """Text with whitespace runs collapsed to one space, and each kept char's original index."""
    chars: list[str] = []
    index: list[int] = []
    in_space = False
    for i, c in enumerate(text):
        if c.isspace():
            if not in_space and chars:
                chars.append(" ")
                index.append(i)
            in_space = True
        else:
            chars.append(c)
            index.append(i)
            in_space = False
    return "".join(chars), index


def _strip_stray(text: str) -> str:
    return text.strip(" \t`'\"\u2018\u2019\u201c\u201d")


def rationale_char_spans(text: str, substrings: Iterable[str]) -> RationaleSpans:
    """Find each rationale substring in `text`, case-insensitively.

    Substrings are searched in order, each from the end of the previous match (annotators
    list them in reading order), wrapping to the start when not found later. When the exact
    substring is missing, whitespace runs are collapsed on both sides and it is tried again,
    then once more without stray quotes/backticks at its ends.
    A substring found neither way is returned in `unmatched` (never silently dropped).
    """
    low = _lower_same_length(text)
    flat, index = _collapse_whitespace(low)
    spans: list[tuple[int, int]] = []
    unmatched: list[str] = []
    cursor = 0
    for sub in substrings:
        needle = _lower_same_length(sub.strip())
        if not needle:
            continue
        start = low.find(needle, cursor)
        if start < 0:
            start = low.find(needle)
        if start >= 0:
            end = start + len(needle)
        else:
            flat_needle, _ = _collapse_whitespace(needle)
            flat_needle = flat_needle.strip()
            flat_cursor = next((k for k, i in enumerate(index) if i >= cursor), len(index))
            fstart = -1
            # last resort: a stray quote or backtick the annotator's selection picked up
            for candidate in dict.fromkeys((flat_needle, _strip_stray(flat_needle))):
                if candidate:
                    fstart = flat.find(candidate, flat_cursor)
                    if fstart < 0:
                        fstart = flat.find(candidate)
                if fstart >= 0:
                    break
            if fstart < 0:
                unmatched.append(sub)
                continue
            start, end = index[fstart], index[fstart + len(candidate) - 1] + 1
        spans.append((start, end))
        cursor = end
    return RationaleSpans(tuple(spans), tuple(unmatched))


def token_mask_from_spans(offsets: Sequence[tuple[int, int]], spans: Iterable[tuple[int, int]]) -> np.ndarray:
    """Boolean mask over tokens: True where a token's char range overlaps a rationale span.

    Tokens with an empty range (special tokens have (0, 0)) are always False.
    """
    spans = list(spans)
    mask = np.zeros(len(offsets), dtype=bool)
    for t, (start, end) in enumerate(offsets):
        if end <= start:
            continue
        mask[t] = any(start < s_end and end > s_start for s_start, s_end in spans)
    return mask


def token_offsets(text: str, tokenizer: Any, *, add_special_tokens: bool = True,
                  max_length: int | None = None) -> list[tuple[int, int]]:
    """Char offsets of each token of `text`: a `tokenizers.Tokenizer` or a transformers fast tokenizer."""
    if hasattr(tokenizer, "encode_batch") and hasattr(tokenizer, "get_vocab_size"):  # tokenizers.Tokenizer
        if max_length:
            raise ValueError("max_length is for transformers tokenizers; a tokenizers.Tokenizer truncates "
                             "(and pads) by its own settings (enable_truncation)")
        return list(tokenizer.encode(text, add_special_tokens=add_special_tokens).offsets)
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("rationale masks need token offsets: pass a tokenizers.Tokenizer or a *fast* transformers tokenizer")
    kwargs: dict[str, Any] = {"add_special_tokens": add_special_tokens, "return_offsets_mapping": True}
    if max_length:
        kwargs.update(truncation=True, max_length=max_length)
    return [tuple(o) for o in tokenizer(text, **kwargs)["offset_mapping"]]


def rationale_token_mask(text: str, substrings: Iterable[str], tokenizer: Any, *,
                         add_special_tokens: bool = True, max_length: int | None = None,
                         strict: bool = False) -> np.ndarray:
    """Boolean mask over the tokens `tokenizer` makes of `text`: True = part of the rationale.

    Aligned with the tokenizer's own encoding: special and padding tokens included (False),
    truncated by `max_length` (transformers) or by a `tokenizers.Tokenizer`'s own truncation
    settings (the MiniLM tokenizer.json pads and truncates to 128). Substrings not
    found in the text leave no mark; `strict=True` raises `ValueError` naming them instead
    (use `rationale_char_spans` to inspect them).
    """
    found = rationale_char_spans(text, substrings)
    if strict and found.unmatched:
        raise ValueError(f"rationale substring(s) not found in the text: {list(found.unmatched)}")
    offsets = token_offsets(text, tokenizer, add_special_tokens=add_special_tokens, max_length=max_length)
    return token_mask_from_spans(offsets, found.spans)


def rationale_match_rate(examples: Iterable[Example]) -> tuple[int, int, list[tuple[str, str]]]:
    """(matched substrings, all substrings, [(example id, unmatched substring)]) over `examples`."""
    matched = total = 0
    missing: list[tuple[str, str]] = []
    for ex in examples:
        if not ex.rationale:
            continue
        found = rationale_char_spans(ex.text or "", ex.rationale)
        total += len(found.spans) + len(found.unmatched)
        matched += len(found.spans)
        missing.extend((ex.id, sub) for sub in found.unmatched)
    return matched, total, missing
