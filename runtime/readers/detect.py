"""Which format an input is, told from its content first and its name second: a folder holding
a Telegram `result.json` or a WhatsApp chat, a JSON document that is a Telegram export, JSON
lines whose first object is a tweet of one archive or another, a WhatsApp chat's text, and then
.csv / .tsv / .jsonl by extension. `crisislens validate` prints the name found for each input.
"""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path

import crisislens.runtime.readers.telegram as telegram
import crisislens.runtime.readers.whatsapp as whatsapp
from crisislens.runtime.readers.tweets import tweet_shape

FOLDER, JSONL, CSV, TSV = "folder", "jsonl", "csv", "tsv"
TELEGRAM, WHATSAPP = telegram.FORMAT, whatsapp.FORMAT
EXPORTS = (TELEGRAM, WHATSAPP)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
TABLE_SUFFIXES = (".csv", ".tsv")
_HEAD = 64 * 1024


def detect(path: Path) -> str | None:
    """The format of `path`: a name above, a tweet archive's (`tweets.TWARC2`, ...), or None."""
    if path.is_dir():
        if (path / telegram.RESULT_JSON).is_file() or (path / telegram.HTML_EXPORT).is_file():
            return TELEGRAM
        if chat_files(path):
            return WHATSAPP
        return FOLDER
    if not path.is_file():  # a FIFO or a device: opening it could wait forever
        return None
    suffix = path.suffix.lower()
    with path.open("rb") as handle:
        head = handle.read(_HEAD).removeprefix(codecs.BOM_UTF8).lstrip()
    by_name = CSV if suffix == ".csv" else TSV if suffix == ".tsv" else JSONL if suffix in JSONL_SUFFIXES else None
    if head.startswith(b"{"):
        first = head.split(b"\n", 1)[0]
        try:
            obj = json.loads(first.decode("utf-8", "replace"))
        except ValueError:  # not one object per line: a whole JSON document
            obj = None
        if isinstance(obj, dict):
            return tweet_shape(obj) or by_name or JSONL
        if by_name is None and telegram.is_export(head):
            return TELEGRAM
        return by_name or JSONL
    first_line = re.split(r"\r\n|\n|\r", head.decode("utf-8", "replace"), maxsplit=1)[0]
    if by_name is None and (whatsapp.is_chat_file(path) or whatsapp.starts_chat(first_line)):
        return WHATSAPP
    return by_name


def chat_files(folder: Path) -> list[Path]:
    """The WhatsApp chats in a folder (by name: `_chat.txt`, `WhatsApp Chat with ….txt`)."""
    return sorted(p for p in folder.iterdir() if whatsapp.is_chat_file(p) and p.is_file())
