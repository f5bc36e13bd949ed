"""Telegram Desktop exports ("Export chat history" / "Export Telegram data", JSON format): a
folder with `result.json` and the photos it names.

- `result.json` of one chat or channel has `name`, `id` and `messages`; a whole-account export
  has `chats.list` (and `left_chats.list`), each with its own `messages`. Every message of type
  `message` is a post; service messages (joins, pins, calls) are no one's post and are counted.
- Text: `text` is a string, or a list of strings and entity objects (`{"type": "bold", "text":
  ...}`); the pieces are joined. `text_entities` is used when `text` is missing.
- Photo: `photo` (or a `file` whose `mime_type` is an image) is a path relative to the export
  folder; "(File not included. ...)" means the export was made without media: "photo not cached".
- Post id `telegram:CHAT_ID:MESSAGE_ID`; source = the chat or channel name; author = `from`
  (a display name: exports carry no @username); time = `date` (local time of the exporting
  computer).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from crisislens.runtime.readers.fields import PHOTO_NOT_CACHED, _json_type, _Raw

PLATFORM = "telegram"
FORMAT = "telegram"
RESULT_JSON = "result.json"
HTML_EXPORT = "messages.html"  # the export's other format, made for reading, not for tools


class TelegramError(ValueError):
    """The file is not a Telegram export (the whole file is refused: it has no rows to name)."""


def load(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data.decode("utf-8-sig", "replace"))
    except json.JSONDecodeError as exc:
        raise TelegramError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise TelegramError("malformed JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise TelegramError(f"expected a JSON object, got {_json_type(doc)}")
    if not isinstance(doc.get("messages"), list) and not isinstance(doc.get("chats"), dict):
        raise TelegramError("no 'messages' list and no 'chats': not a Telegram Desktop export")
    return doc


def is_export(head: bytes) -> bool:
    """Whether the start of a JSON document looks like a Telegram export (pretty-printed JSON
    with a `messages` list or `chats`, so not one object per line)."""
    return b'"messages"' in head or b'"chats"' in head


def chats(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if isinstance(doc.get("messages"), list):
        return [doc]
    found = []
    for key in ("chats", "left_chats"):
        group = doc.get(key)
        listed = group.get("list") if isinstance(group, dict) else None
        found += [c for c in listed or [] if isinstance(c, dict) and isinstance(c.get("messages"), list)]
    return found


def message_rows(doc: dict[str, Any], file: str) -> Iterator[_Raw | int]:
    """One `_Raw` per message; an int is a chat's count of service messages (no posts)."""
    for chat in chats(doc):
        name = chat.get("name") if isinstance(chat.get("name"), str) else None
        service = 0
        for number, msg in enumerate(chat["messages"], start=1):
            if isinstance(msg, dict) and msg.get("type") == "service":
                service += 1
                continue
            yield _message_row(msg, number, chat.get("id"), name, file)
        if service:
            yield service


def _message_row(msg: Any, number: int, chat_id: Any, chat_name: str | None, file: str) -> _Raw:
    """`number`: the message's place in its chat, naming one that has no usable id."""
    if not isinstance(msg, dict):
        return _Raw(f"{file} message #{number}", None, error=f"a message is {_json_type(msg)}, not an object")
    msg_id = msg.get("id")
    if not isinstance(msg_id, (int, str)) or isinstance(msg_id, bool):
        return _Raw(f"{file} message #{number}", None, error="message without an id")
    raw = _Raw(f"{file} message {msg_id}", None)
    raw.values.update(
        id=f"telegram:{chat_id}:{msg_id}" if chat_id is not None else f"telegram:{msg_id}",
        platform=PLATFORM,
        created_at=msg.get("date"),
        source=chat_name,
        author=msg.get("from") or msg.get("author"),
        text=_joined(msg["text"] if "text" in msg else msg.get("text_entities")),
    )
    for key in ("from_id", "forwarded_from", "reply_to_message_id", "edited", "media_type"):
        if key in msg:
            raw.metadata[key] = msg[key]
    photo = msg.get("photo")
    if photo is None and str(msg.get("mime_type", "")).startswith("image/"):
        photo = msg.get("file")
    if isinstance(photo, str) and photo.startswith("(File not included"):
        raw.uncached += 1
        raw.metadata["photo"] = photo
        if not (raw.values["text"] or "").strip():
            raw.error = f"{PHOTO_NOT_CACHED} (the export was made without media) and the message has no text"
        else:
            raw.warnings.append(f"{PHOTO_NOT_CACHED} (the export was made without media); read as text-only")
    elif photo is not None:
        raw.values["image"] = photo
    elif not (raw.values["text"] or "").strip() and "media_type" in msg:
        raw.error = f"a {msg['media_type']} message without text: nothing to read (only photos and text are)"
    return raw


def _joined(text: Any) -> str | None:
    """`text` as one string: a list's strings and its entities' `text` in order."""
    if isinstance(text, str) or text is None:
        return text
    if not isinstance(text, list):
        return None
    parts = []
    for piece in text:
        if isinstance(piece, str):
            parts.append(piece)
        elif isinstance(piece, dict) and isinstance(piece.get("text"), str):
            parts.append(piece["text"])
    return "".join(parts)
