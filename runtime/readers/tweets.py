"""Tweet archives: twarc2's response pages and its flattened tweets (Twitter API v2), and tweet
objects of API v1.1 (twarc 1 and most research archives), one JSON object per line.

- A twarc2 page (`data` list, `includes.media` / `includes.users` / `includes.tweets`) gives one
  post per tweet in `data`; a flattened line (`twarc2 flatten`) is one v2 tweet with `author` and
  `attachments.media` expanded; a v1.1 line is one tweet object with `id_str`.
- Text: a note tweet's full text, else `text` (v2); `extended_tweet.full_text`, `full_text`, then
  `text` (v1.1). A retweet takes the original tweet's text and photos (the retweet's own text is
  cut to 140 characters). Twitter escapes `&`, `<` and `>` in text; they are unescaped.
- Photos are never fetched: a photo is read from the archive's folder (or `--image-root`), or a
  `media/` folder in it, under the last part of its URL (`pbs.twimg.com/media/ABC.jpg` -> `ABC.jpg`)
  or its media key / media id with a photo suffix. Otherwise the post is read from its text with
  the warning "photo not cached". Videos and GIFs count by their preview image.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from crisislens.runtime.readers.fields import IMAGE_SUFFIXES, _is_file, _Raw

PLATFORM = "twitter"
TWARC2, TWEET_V2, TWEET_V1 = "twarc2", "twitter-v2", "twitter-v1.1"
_V2_MARKERS = ("edit_history_tweet_ids", "author_id", "__twarc", "conversation_id", "public_metrics")


def tweet_shape(obj: dict[str, Any]) -> str | None:
    """Which tweet archive a JSON line belongs to, or None when it is not a tweet (a plain post)."""
    if isinstance(obj.get("data"), (list, dict)) and ("includes" in obj or "meta" in obj or "__twarc" in obj):
        return TWARC2
    if "id_str" in obj and any(k in obj for k in ("full_text", "text", "user", "retweeted_status")):
        return TWEET_V1
    if "id" in obj and "text" in obj and any(k in obj for k in _V2_MARKERS):
        return TWEET_V2
    return None


def tweet_rows(obj: dict[str, Any], shape: str, file: str, line: int, root: Path) -> list[_Raw]:
    """The posts of one line (a page holds many; a tweet line one)."""
    if shape == TWEET_V1:
        return [_v1_row(obj, file, line, root)]
    if shape == TWEET_V2:
        return [_v2_row(obj, _Includes({}), file, line, root)]
    data = obj.get("data")
    tweets = [data] if isinstance(data, dict) else data if isinstance(data, list) else []
    includes = _Includes(_obj(obj.get("includes")))
    rows = []
    for tweet in tweets:
        if isinstance(tweet, dict):
            rows.append(_v2_row(tweet, includes, file, line, root))
        else:
            rows.append(_Raw(file, line, error="a tweet in the page's data is not a JSON object"))
    return rows


class _Includes:
    """A v2 page's expansions, by id."""

    def __init__(self, includes: dict[str, Any]):
        self.present = "media" in includes
        self.media = _by(includes.get("media"), "media_key")
        self.users = _by(includes.get("users"), "id")
        self.tweets = _by(includes.get("tweets"), "id")


def _by(items: Any, key: str) -> dict[str, dict[str, Any]]:
    if not isinstance(items, list):
        return {}
    return {str(i[key]): i for i in items if isinstance(i, dict) and key in i}


def _v2_row(tweet: dict[str, Any], inc: _Includes, file: str, line: int, root: Path) -> _Raw:
    raw = _Raw(file, line)
    raw.values.update(id=tweet.get("id"), platform=PLATFORM, created_at=tweet.get("created_at"))
    source = tweet
    for ref in _list(tweet.get("referenced_tweets")):
        if not isinstance(ref, dict) or ref.get("type") != "retweeted":
            continue
        # twarc2 flatten expands the referenced tweet in place; a page has it in includes.tweets
        original = ref if "text" in ref else inc.tweets.get(str(ref.get("id")))
        raw.metadata["retweet_of"] = ref.get("id")
        if original is None:
            raw.warnings.append("the retweeted tweet is not in the archive; its text is the retweet's (may be cut)")
        else:
            source = original
    note = source.get("note_tweet")
    text = note.get("text") if isinstance(note, dict) and note.get("text") else source.get("text")
    raw.values["text"] = _unescape(text)
    author = tweet.get("author")
    if not isinstance(author, dict):  # flattened tweets carry it; a page has it in includes.users
        author = inc.users.get(str(tweet.get("author_id")))
    if author and author.get("username"):
        raw.values["author"] = "@" + str(author["username"])
    for key in ("lang", "author_id", "conversation_id"):
        if key in tweet:
            raw.metadata[key] = tweet[key]
    attachments = _obj(source.get("attachments"))
    media = [m for m in _list(attachments.get("media")) if isinstance(m, dict)]  # flattened: expanded
    keys = [str(k) for k in _list(attachments.get("media_keys")) if isinstance(k, (str, int))]
    missing = [k for k in keys if k not in inc.media and not any(m.get("media_key") == k for m in media)]
    media += [inc.media[k] for k in keys if k in inc.media]
    media += [{"media_key": k} for k in missing]  # described nowhere: only a cached file can help
    if missing and not media[: len(media) - len(missing)]:
        where = "the page has no includes.media" if not inc.present else "not in the page's includes.media"
        raw.metadata["media_keys"] = keys
        raw.warnings.append(f"media {', '.join(missing)} not described ({where})")
    _photo(raw, [(m.get("url") or m.get("preview_image_url"), m.get("media_key"), m.get("type")) for m in media], root)
    return raw


def _v1_row(tweet: dict[str, Any], file: str, line: int, root: Path) -> _Raw:
    raw = _Raw(file, line)
    raw.values.update(id=tweet.get("id_str"), platform=PLATFORM, created_at=_v1_time(tweet.get("created_at")))
    if raw.values["id"] is None and isinstance(tweet.get("id"), int):
        raw.values["id"] = tweet["id"]
    source = tweet
    if isinstance(tweet.get("retweeted_status"), dict):
        source = tweet["retweeted_status"]
        raw.metadata["retweet_of"] = source.get("id_str")
    extended = _obj(source.get("extended_tweet"))
    raw.values["text"] = _unescape(extended.get("full_text") or source.get("full_text") or source.get("text"))
    user = _obj(tweet.get("user"))
    if user.get("screen_name"):
        raw.values["author"] = "@" + str(user["screen_name"])
    if "lang" in tweet:
        raw.metadata["lang"] = tweet["lang"]
    media: list[Any] = []
    for holder in (extended, source):
        for key in ("extended_entities", "entities"):
            entities = holder.get(key)
            if not media and isinstance(entities, dict) and isinstance(entities.get("media"), list):
                media = [m for m in entities["media"] if isinstance(m, dict)]
    _photo(raw, [(m.get("media_url_https") or m.get("media_url"), m.get("id_str"), m.get("type")) for m in media], root)
    return raw


def _photo(raw: _Raw, media: list[tuple[Any, Any, Any]], root: Path) -> None:
    """The first cached photo becomes the post's image; else its URL (read as "photo not cached")."""
    media.sort(key=lambda m: m[2] != "photo")  # photos before video previews
    urls = [str(url) for url, _, _ in media if url]
    for url, key, _ in media:
        for name in _local_names(url, key):
            for folder in ("", "media/"):
                if _is_file(root / folder / name):
                    raw.values["image"] = folder + name
                    if len(media) > 1:
                        raw.metadata["photos"] = urls
                    return
    if urls:
        raw.values["image"] = urls[0]
        if len(urls) > 1:
            raw.metadata["photos"] = urls
    elif media:
        raw.uncached += 1
        raw.warnings.append("photo not cached (no URL and no file named after its media key); read as text-only")


def _local_names(url: Any, key: Any) -> list[str]:
    names = []
    if isinstance(url, str) and url:
        try:
            base = Path(urlparse(url).path).name
        except ValueError:  # not a URL (a bad IPv6 host, ...): no name to look for
            base = ""
        if base and base not in (".", ".."):
            names.append(base)
    if isinstance(key, (str, int)) and str(key).strip("./"):
        names += [f"{key}{suffix}" for suffix in IMAGE_SUFFIXES]
    return [n for n in names if "/" not in n and "\\" not in n and "\x00" not in n]


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _unescape(text: Any) -> Any:
    """Twitter's text escapes only &, < and > (as &amp; &lt; &gt;); &amp; last, so `&amp;lt;` stays `&lt;`."""
    if not isinstance(text, str):
        return text
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _v1_time(value: Any) -> Any:
    """v1.1's `Wed Oct 10 20:19:24 +0000 2018` as ISO 8601; anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return datetime.strptime(value, "%a %b %d %H:%M:%S %z %Y").isoformat().replace("+00:00", "Z")
    except ValueError:
        return value
