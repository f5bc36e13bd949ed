"""WhatsApp chat exports ("Export chat" -> "Attach media"): the chat as text (`_chat.txt` from an
iPhone, `WhatsApp Chat with NAME.txt` from Android) with the attached files beside it.

- A message starts on a line with its date and time and the sender, in the phone's locale:
  `12/31/22, 9:41 PM - Ana: ...` (Android), `[31/12/2022, 21:41:05] Ana: ...` (iPhone),
  `31.12.22, 21:41 - Ana: ...`, `2022-12-31 21:41 - ...`. Every other line continues the message
  before it, so a message spanning lines is kept whole. Day and month are told apart by the file:
  a first number over 12 means day first, a second over 12 month first; when no date says,
  a 12-hour clock means month first, a 24-hour clock day first.
- Lines without a sender (encryption notice, "Ana added Ben") are the app's, not posts: counted.
- Attachments: `IMG-20221231-WA0001.jpg (file attached)` (Android) or `<attached: 00000012-PHOTO-
  ...jpg>` (iPhone), in any language; a photo is read from the chat's folder, and one that is not
  there is "photo not cached". `<Media omitted>` / `image omitted` (exported without media) is
  "photo not cached" too. A deleted message ("This message was deleted") is recorded, not read.
- Post id `whatsapp:CHAT:LINE`; source = the chat's name; author = the sender as the phone shows
  it (a contact name or a number); time = the phone's local time, as ISO 8601.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from crisislens.runtime.readers.fields import IMAGE_SUFFIXES, PHOTO_NOT_CACHED, _quoted, _Raw

PLATFORM = "whatsapp"
FORMAT = "whatsapp"
_MARKS = "\u200e\u200f\u202a\u202c\ufeff"  # direction marks WhatsApp puts before dates and attachments

_START = re.compile(
    rf"^[{_MARKS}]*\[?(?P<date>\d{{1,4}}[./-]\d{{1,2}}[./-]\d{{2,4}}),?\s+"
    r"(?P<time>\d{1,2}[:.]\d{2}(?:[:.]\d{2})?)(?:[\s\u202f\u00a0]*(?P<ampm>[AaPp])\.?\s?[Mm]\.?)?\]?"
    r"\s*(?:[-\u2013]\s)?(?P<rest>.*)$"
)
_SENDER = re.compile(r"^(?P<author>[^:\n]{1,80}?): (?P<text>.*)$", re.S)
_ANDROID_ATTACHED = re.compile(rf"^[{_MARKS}]*(?P<file>[^\n()<>:/\\]+?\.[A-Za-z0-9]{{2,5}}) \([^()\n]{{3,40}}\)$")
_IOS_ATTACHED = re.compile(rf"^[{_MARKS}]*<[^<>:\n]{{2,30}}:\s*(?P<file>[^<>\n/\\]+?\.[A-Za-z0-9]{{2,5}})>$")
_OMITTED = re.compile(
    rf"^[{_MARKS}]*(?:<(?:Media omitted|Medien ausgeschlossen|Multimedia omitido|Médias omis|Mídia oculta|"
    r"Media weggelaten|Media omessi)>|(?:image|photo|video|audio|sticker|GIF|document) omitted|"
    r"(?:imagen|video|audio) omitido|(?:Bild|Video|Audio) weggelassen|(?:image|vidéo) absente|"
    r"(?:imagem|vídeo) ocultad[oa])$",
    re.I,
)
_DELETED = re.compile(
    rf"^[{_MARKS}]*(?:This message was deleted|You deleted this message|Diese Nachricht wurde gelöscht|"
    r"Du hast diese Nachricht gelöscht|Se eliminó este mensaje|Eliminaste este mensaje|Ce message a été supprimé|"
    r"Vous avez supprimé ce message|Mensagem apagada|Esta mensagem foi apagada|Você apagou esta mensagem)\.?$",
    re.I,
)
CHAT_NAMES = ("_chat.txt",)


def is_chat_file(path: Path) -> bool:
    """A chat export by its name: `_chat.txt` (iPhone) or a .txt naming WhatsApp (Android, any language)."""
    name = path.name.lower()
    return name in CHAT_NAMES or (name.endswith(".txt") and "whatsapp" in name)


def starts_chat(first_line: str) -> bool:
    """Whether a text's first line is a WhatsApp message line."""
    match = _START.match(first_line)
    return match is not None and bool(match["rest"])


def chat_name(path: Path) -> str:
    """`WhatsApp Chat with Flood team.txt` -> `Flood team`; `_chat.txt` -> its folder's name."""
    if path.name.lower() in CHAT_NAMES:
        folder = path.resolve().parent.name
        return re.sub(r"(?i)^whatsapp chat\s*-\s*", "", folder) or "WhatsApp"
    stem = re.sub(r"(?i)^whatsapp[- ]chat\s*(?:with|mit|con|avec|com|met|-)?\s*", "", path.stem)
    return stem or path.stem


@dataclass
class _Message:
    line: int
    date: tuple[str, str, str]
    time: str
    ampm: str | None
    rest: str
    more: list[str] = field(default_factory=list)


def message_rows(lines: list[str], file: str, chat: str) -> Iterator[_Raw | int]:
    """One `_Raw` per message; an int is the count of the app's own lines (no sender)."""
    messages: list[_Message] = []
    orphans: list[int] = []
    for number, text in enumerate(lines, start=1):
        match = _START.match(text)
        if match and match["rest"]:
            a, b, c = re.split(r"[./-]", match["date"])
            messages.append(_Message(number, (a, b, c), match["time"], match["ampm"], match["rest"]))
        elif messages:
            messages[-1].more.append(text)
        elif text.strip():
            orphans.append(number)
    if orphans:  # text before the first dated line: not a message, not silently dropped
        yield _Raw(file, orphans[0], error=f"{len(orphans)} line(s) before the first dated message; not a message")
    order = _date_order(messages)
    system = 0
    for msg in messages:
        sender = _SENDER.match(msg.rest)
        if sender is None or _is_ios_notice(sender["text"]):
            system += 1
            continue
        yield _message_row(msg, sender["author"].strip(_MARKS + " "), sender["text"], order, file, chat)
    if system:
        yield system


def _is_ios_notice(text: str) -> bool:
    """An iPhone writes the app's own lines with the chat as sender and a direction mark first;
    attachment and deletion markers start with the mark too, and are messages."""
    if not text.startswith("\u200e"):
        return False
    return not (_IOS_ATTACHED.match(text) or _OMITTED.match(text.strip()) or _DELETED.match(text.strip()))


def _message_row(msg: _Message, author: str, first: str, order: str, file: str, chat: str) -> _Raw:
    raw = _Raw(file, msg.line)
    raw.values.update(
        id=f"whatsapp:{chat}:{msg.line}",
        platform=PLATFORM,
        source=chat,
        author=author,
        created_at=_iso(msg, order),
    )
    kept: list[str] = []
    photos: list[str] = []
    others: list[str] = []
    omitted = False
    for text in [first, *msg.more]:
        attached = _ANDROID_ATTACHED.match(text) or _IOS_ATTACHED.match(text)
        if attached:
            name = attached["file"].strip()
            (photos if name.lower().endswith(IMAGE_SUFFIXES) else others).append(name)
        elif _OMITTED.match(text.strip()):
            omitted = True
        else:
            kept.append(text)
    text = "\n".join(kept).strip(_MARKS + " \n")
    if _DELETED.match(text):
        raw.error = "message deleted by its sender; nothing to read"
        return raw
    raw.values["text"] = text
    if others:
        raw.metadata["attachments"] = others
    if photos:
        raw.values["image"] = photos[0]  # a missing file becomes "not found; read as text-only"
        if len(photos) > 1:
            raw.metadata["photos"] = photos
    elif omitted:
        raw.uncached += 1
        if not text:
            raw.error = f"{PHOTO_NOT_CACHED} (the chat was exported without media) and the message has no text"
        else:
            raw.warnings.append(f"{PHOTO_NOT_CACHED} (the chat was exported without media); read as text-only")
    elif others and not text:
        raw.error = f"attachment {_quoted(others[0])} is not a photo and the message has no text"
    return raw


def _date_order(messages: list[_Message]) -> str:
    """'ymd', 'dmy' or 'mdy' for the whole chat (one phone, one locale)."""
    if any(len(m.date[0]) == 4 for m in messages):
        return "ymd"
    if any(int(m.date[0]) > 12 for m in messages):
        return "dmy"
    if any(int(m.date[1]) > 12 for m in messages):
        return "mdy"
    return "mdy" if any(m.ampm for m in messages) else "dmy"


def _iso(msg: _Message, order: str) -> str | None:
    a, b, c = (int(x) for x in msg.date)
    year, month, day = {"ymd": (a, b, c), "dmy": (c, b, a), "mdy": (c, a, b)}[order]
    if year < 100:
        year += 2000
    parts = [int(x) for x in re.split(r"[:.]", msg.time)]
    hour, minute, second = parts[0], parts[1], parts[2] if len(parts) > 2 else 0
    if msg.ampm:
        hour = hour % 12 + (12 if msg.ampm.lower() == "p" else 0)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        return None
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
