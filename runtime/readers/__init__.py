"""Reading cached posts into `Post`s: JSONL, CSV/TSV (CrisisMMD task files included), folders of
`ID.txt` + `ID.jpg` pairs, and the archives responders hold: tweets (twarc2 pages, flattened
tweets, API v1.1 objects), Telegram Desktop exports and WhatsApp chat exports. The format is
told from the content (`detect`), the extension only where the content does not say.

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
  tab-separated without quoting (tweets are not quoted data: a quote is text); in a .csv a broken
  quote (never closed, text after a closing quote) costs the row of its own line, and reading
  goes on with the next line.
  A CrisisMMD task file (header with event_name, image_id, image) is a .tsv with one post per
  image: id = image_id; tweet_id and event_name go to metadata.
- Image paths are relative to the input file's folder, or to `image_root` (where a CrisisMMD
  `data_image/` prefix is dropped); after resolving links they must stay inside that folder
  (a path that leaves it costs the photo, like a missing one: the text is still read).
  A folder input reads its own `ID.txt` / `ID.jpg` files, in id order, whatever `image_root`.
- Text that is empty or only whitespace counts as no text (`Post.text` is None). Mojibake (text
  decoded with the wrong codec upstream) is repaired when read (`mojibake`, a warning); the text
  as read stays in `Post.original_text`.
- Photos are read from local files only: a URL is never fetched; its post is read from its text
  with the warning "photo not cached". `columns` names a table's own id/text/image columns.
- Each post keeps where it came from: `origin` (FILE:LINE, or FILE message ID), `platform`,
  `author`, `created_at`.
- A post id is used once per read, across all inputs: the first row that was kept wins.

Modules: `reader` (reading inputs: `read_posts`, `iter_posts`), `detect` (which format an input
is), `formats` (JSONL lines, CSV/TSV rows, folders), `tweets`, `telegram`, `whatsapp` (the
archives), `fields` (a row's fields, ids and image paths), `mojibake`, `seen` (the ids read so far,
on disk), `report` (problems and the per-input summary).
"""

from crisislens.runtime.readers.reader import (
    IMAGE_SUFFIXES,
    JSONL_SUFFIXES,
    TABLE_SUFFIXES,
    TEXT_SUFFIX,
    iter_posts,
    read_posts,
)
from crisislens.runtime.readers.report import ReadError, ReadProblem, ReadReport

__all__ = [
    "IMAGE_SUFFIXES",
    "JSONL_SUFFIXES",
    "TABLE_SUFFIXES",
    "TEXT_SUFFIX",
    "ReadError",
    "ReadProblem",
    "ReadReport",
    "iter_posts",
    "read_posts",
]
