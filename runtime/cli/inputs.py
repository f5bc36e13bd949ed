"""The options that say how to read an input table or JSON lines with their own field names:
`--id-column`, `--text-column`, `--image-column` (validate, triage and tui share them)."""

from __future__ import annotations

import argparse

INPUT_HELP = (
    "a file or folder: JSON lines (tweet archives too), .csv/.tsv, a Telegram export, a WhatsApp chat, "
    "or ID.txt + ID.jpg pairs"
)
COLUMN_OPTIONS = {
    "id": "the column (or JSON field) holding each post's id (default: id, post_id or tweet_id)",
    "text": "the column holding the post's text (default: text or tweet_text)",
    "image": "the column holding the photo's path, relative to the file or --image-root (default: image, image_path)",
}


def add_column_options(parser: argparse.ArgumentParser) -> None:
    for field, help in COLUMN_OPTIONS.items():
        parser.add_argument(f"--{field}-column", default=None, metavar="NAME", help=help)


def column_names(args: argparse.Namespace) -> dict[str, str] | None:
    """{field: column} for the options given, or None when none was."""
    named = {field: getattr(args, f"{field}_column", None) for field in COLUMN_OPTIONS}
    return {field: name for field, name in named.items() if name} or None
