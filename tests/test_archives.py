"""The archives responders hold, read as they are: twarc2 pages and flattened tweets, API v1.1
tweets, a Telegram Desktop export, WhatsApp chat exports (Android and iPhone), and a table with
its own column names. The fixtures under fixtures/archives were written by hand from each
format's documentation (no real post)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest

from crisislens.runtime.readers import read_posts
from crisislens.runtime.readers.detect import detect
from crisislens.runtime.readers.mojibake import REPAIRED, repair
from crisislens.runtime.readers.whatsapp import message_rows

ARCHIVES = Path(__file__).parent / "fixtures" / "archives"
TWARC2 = ARCHIVES / "twarc2" / "flood-search.jsonl"
FLAT = ARCHIVES / "twarc2" / "flood-flat.jsonl"
V1 = ARCHIVES / "twitter_v1" / "tweets.jsonl"
TELEGRAM = ARCHIVES / "telegram" / "ChatExport_2024-03-15"
ANDROID = ARCHIVES / "whatsapp" / "android"
IPHONE = ARCHIVES / "whatsapp" / "iphone"
COLUMNS = ARCHIVES / "columns" / "field-reports.csv"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Photos are read from local files only: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a reader tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def by_id(report):
    return {p.id: p for p in report.posts}


def messages(report, severity=None):
    return [str(p) for p in report.problems if severity is None or p.severity == severity]


def nothing_lost(report):
    errors = [p for p in report.errors if p.line is not None or " message " in p.file]
    assert report.rows_seen == len(report.posts) + len(errors), report.problems


# ----------------------------------------------------------------------------- Twitter / X


def test_twarc2_pages_give_one_post_per_tweet_with_where_it_came_from():
    report = read_posts([TWARC2])
    posts = by_id(report)
    assert list(posts) == [f"176800000000000000{i}" for i in (1, 2, 3, 4)]
    first = posts["1768000000000000001"]
    assert first.image is not None and first.image.name == "FhQx1aBcDeF.jpg"  # cached beside the archive
    assert (first.platform, first.author, first.created_at) == ("twitter", "@county_ems_demo", "2024-03-15T09:12:40.000Z")
    assert first.origin.endswith("flood-search.jsonl:1") and first.source == "flood-search.jsonl"
    assert report.inputs[0].format == "twarc2"
    nothing_lost(report)


def test_a_twarc2_retweet_takes_the_original_text_and_photo():
    retweet = by_id(read_posts([TWARC2]))["1768000000000000002"]
    assert retweet.text == "Family of four on a roof near the mill, need a boat & life vests https://t.co/cccccccccc"
    assert retweet.author == "@neighbour_demo" and retweet.metadata["retweet_of"] == "1768000000000000090"
    # the original's photo is known only by its URL: text-only, with the warning, never fetched
    assert retweet.image is None
    assert any("photo not cached" in w and "GzNotCached1.jpg" in w for w in retweet.warnings)


def test_a_note_tweet_gives_its_full_text_unescaped():
    note = by_id(read_posts([TWARC2]))["1768000000000000003"]
    assert note.text.startswith("Long update from the shelter: the school gym")
    assert "120 cots <full>" in note.text and "blankets & dry socks" in note.text


def test_a_twarc2_page_without_its_media_list_is_read_from_text_with_a_warning():
    report = read_posts([TWARC2])
    post = by_id(report)["1768000000000000004"]
    assert post.text == "Power lines down on Elm Ave, stay clear" and post.image is None
    assert any("the page has no includes.media" in w for w in post.warnings)
    assert any("photo not cached" in w for w in post.warnings)
    summary = report.inputs[0]
    assert (summary.posts, summary.photos, summary.not_cached, summary.errors) == (4, 1, 2, 1)
    [error] = report.errors
    assert error.line == 3 and "malformed JSON" in error.message


def test_twarc2_flattened_tweets_and_a_retweet_of_a_tweet_with_media():
    report = read_posts([FLAT])
    assert report.inputs[0].format == "twitter-v2"
    original, retweet = report.posts
    assert retweet.text == original.text == "Water treatment plant offline, boil water notice for Millbrook"
    assert retweet.image is not None and retweet.image.name == "FhQx1aBcDeF.jpg"
    assert (retweet.author, original.author) == ("@relay_demo", "@county_ems_demo")
    assert not report.problems


def test_v11_tweets_full_text_retweets_and_extended_media():
    report = read_posts([V1])
    assert report.inputs[0].format == "twitter-v1.1"
    posts = by_id(report)
    assert posts["1768000000000000021"].text == "Shelter at Lincoln High is open, bring ID & meds"
    assert posts["1768000000000000021"].created_at == "2024-03-15T09:12:40Z"
    retweet = posts["1768000000000000022"]
    assert retweet.text.endswith("Ambulances rerouted via Mill Rd until further notice https://t.co/ffffffffff")
    assert retweet.image is not None and retweet.image.name == "Ev8kQ2zWQAE.jpg"
    assert retweet.author == "@relay_demo" and retweet.metadata["retweet_of"] == "1768000000000000029"
    [error] = report.errors
    assert error.line == 4 and "expected a JSON object" in error.message
    nothing_lost(report)


# ----------------------------------------------------------------------------- Telegram


def test_telegram_export_messages_entities_photos_and_service_messages():
    report = read_posts([TELEGRAM])
    assert report.inputs[0].format == "telegram"
    posts = by_id(report)
    first = posts["telegram:1000000001:2"]
    assert first.image is not None and first.image.name == "photo_1@15-03-2024_09-12-40.jpg"
    assert (first.platform, first.source, first.created_at) == (
        "telegram",
        "Millbrook Flood Updates (demo)",
        "2024-03-15T09:12:40",
    )
    assert first.author == "Millbrook Flood Updates (demo)" and first.origin.endswith("result.json message 2")
    assert posts["telegram:1000000001:3"].text == "Shelters open: Lincoln High gym and St. Mary's hall. Bring blankets."
    assert posts["telegram:1000000001:4"].text == "#MillbrookFlood https://example.org/map"  # entities only
    assert any("photo not cached" in w for w in posts["telegram:1000000001:5"].warnings)
    assert posts["telegram:1000000001:7"].text is None and posts["telegram:1000000001:7"].image is not None
    [error] = report.errors
    assert "message 6" in error.file and "sticker" in error.message
    assert any("1 service message(s)" in m for m in messages(report, "warning"))
    nothing_lost(report)


def test_telegram_result_json_is_found_by_its_content_under_any_name(tmp_path):
    folder = tmp_path / "export"
    shutil.copytree(TELEGRAM, folder)
    renamed = folder / "channel.json"
    (folder / "result.json").rename(renamed)
    assert detect(renamed) == "telegram"
    report = read_posts([renamed])
    assert len(report.posts) == 5 and report.posts[0].image is not None


def test_a_broken_telegram_export_is_one_clear_error(tmp_path):
    bad = tmp_path / "result.json"
    bad.write_text('{\n "name": "x",\n "messages": [\n  {"id": 1,\n')
    report = read_posts([bad])
    [error] = report.errors
    assert "not a readable Telegram export" in error.message and "line" in error.message


def test_a_telegram_export_in_html_says_to_export_json(tmp_path):
    (tmp_path / "messages.html").write_text("<html><body>Route 9 bridge collapsed</body></html>")
    (tmp_path / "photos").mkdir()
    [error] = read_posts([tmp_path]).errors
    assert "Telegram export in HTML" in error.message and "Machine-readable JSON" in error.message


# ----------------------------------------------------------------------------- WhatsApp


def test_whatsapp_android_export_multiline_attachment_omitted_and_deleted():
    report = read_posts([ANDROID])
    assert report.inputs[0].format == "whatsapp"
    posts = {p.origin.rsplit(":", 1)[1]: p for p in report.posts}
    assert posts["3"].text == "Bridge on Route 9 is gone" and posts["3"].image.name == "IMG-20240315-WA0001.jpg"
    assert posts["3"].author == "Dana" and posts["3"].source == "Flood volunteers (demo)"
    assert posts["3"].created_at == "2024-03-15T09:12:00"  # 12-hour clock, month first
    assert posts["5"].text == (
        "Family stuck upstairs at 14 Mill Lane.\nTwo kids, one elderly man.\nThey need a boat, water is at the windows"
    )
    assert posts["5"].author == "+1 555 0100"
    assert posts["12"].created_at == "2024-03-15T13:05:00" and posts["12"].text.endswith("come help: 2 hours")
    assert any("'IMG-20240315-WA0002.jpg' not found" in w for w in posts["10"].warnings)  # media deleted
    errors = {e.line: e.message for e in report.errors}
    assert "photo not cached" in errors[8] and "deleted" in errors[9]
    assert any("2 line(s) of the app's own" in m for m in messages(report, "warning"))
    assert report.inputs[0].not_cached == 2
    nothing_lost(report)


def test_whatsapp_iphone_export_day_first_with_seconds_and_notices():
    report = read_posts([IPHONE])
    posts = {p.origin.rsplit(":", 1)[1]: p for p in report.posts}
    assert set(posts) == {"2", "3"}  # line 1 is the app's encryption notice
    assert posts["2"].image.name == "00000004-PHOTO-2024-03-15-09-20-11.jpg" and posts["2"].text is None
    assert posts["2"].created_at == "2024-03-15T09:20:11"
    assert posts["3"].text == "Roof of the care home on Oak St has collapsed,\nresidents moved to the\ncommunity centre"
    errors = {e.line: e.message for e in report.errors}
    assert "photo not cached" in errors[6] and "deleted" in errors[7]


@pytest.mark.parametrize(
    ("lines", "iso"),
    [
        (["31.12.22, 21:41 - Ana: hallo"], "2022-12-31T21:41:00"),
        (["12/31/22, 9:41 PM - Ana: hi"], "2022-12-31T21:41:00"),
        (["[03/04/2024, 08:05:09] Ana: hola"], "2024-04-03T08:05:09"),  # no date says: 24 h -> day first
        (["3/4/24, 8:05 a. m. - Ana: hola"], "2024-03-04T08:05:00"),  # 12 h -> month first
        (["2024-03-04 20:05 - Ana: hej"], "2024-03-04T20:05:00"),
        (["03/04/2024, 08:05 - Ana: a", "13/04/2024, 09:00 - Ben: b"], "2024-04-03T08:05:00"),  # a later date says
    ],
)
def test_whatsapp_dates_of_common_locales(lines, iso):
    first = next(iter(message_rows(lines, "chat.txt", "chat")))
    assert first.values["created_at"] == iso and first.values["text"]


def test_a_whatsapp_chat_is_found_by_its_content(tmp_path):
    chat = tmp_path / "export.txt"
    chat.write_text("15/03/2024, 09:14 - Ana: water rising at the bridge\nand the road is closed\n")
    assert detect(chat) == "whatsapp"
    [post] = read_posts([chat]).posts
    assert post.text == "water rising at the bridge\nand the road is closed" and post.platform == "whatsapp"


# ----------------------------------------------------------------------------- any table


def test_a_table_with_its_own_column_names(tmp_path):
    report = read_posts([COLUMNS], columns={"id": "report_no", "text": "message", "image": "picture"})
    posts = by_id(report)
    assert posts["7"].image is not None and posts["7"].image.name == "pic-7.jpg"
    assert posts["8"].text == "Two cows stranded in the river field" and posts["8"].metadata["reported_by"] == "team B"
    assert any("photo not cached" in w for w in posts["9"].warnings)  # a URL: never fetched
    assert not report.errors


def test_unrecognised_columns_are_listed_with_the_options_that_name_them(tmp_path):
    [error] = read_posts([COLUMNS]).errors
    assert "found: report_no, message, picture, reported_by" in error.message
    assert "--text-column" in error.message
    lines = tmp_path / "reports.jsonl"
    lines.write_text(json.dumps({"body": "bridge out", "ref": 4}) + "\n")
    [error] = read_posts([lines]).errors
    assert "found: 'body, ref'" in error.message and "--id-column" in error.message
    [post] = read_posts([lines], columns={"id": "ref", "text": "body"}).posts
    assert (post.id, post.text) == ("4", "bridge out")


# ----------------------------------------------------------------------------- behaviour


def test_formats_are_detected_from_content_not_the_extension(tmp_path):
    for source, name, expected in [
        (TWARC2, "archive.txt", "twarc2"),
        (FLAT, "tweets", "twitter-v2"),
        (V1, "old.json", "twitter-v1.1"),
        (TELEGRAM / "result.json", "export.json", "telegram"),
    ]:
        copy = tmp_path / name
        shutil.copy(source, copy)
        assert detect(copy) == expected, name
    (tmp_path / "archive.txt").unlink()
    assert len(read_posts([tmp_path / "tweets"]).posts) == 2


def test_mojibake_is_repaired_and_the_original_kept():
    post = by_id(read_posts([V1]))["1768000000000000023"]
    assert post.text == "It’s still raining in Magaña county, roads closed"
    assert post.original_text == "Itâ€™s still raining in MagaÃ±a county, roads closed"
    assert REPAIRED in post.warnings[-1] or any(REPAIRED in w for w in post.warnings)
    clean = by_id(read_posts([V1]))["1768000000000000021"]
    assert clean.original_text is None and not any(REPAIRED in w for w in clean.warnings)


@pytest.mark.parametrize(
    "text",
    ["“curly quotes” stay", "ﬁ ligature and ＦＵＬＬ width stay", "café, naïve, straße", "&amp; stays", "plain"],
)
def test_mojibake_repair_changes_nothing_that_was_written_on_purpose(text):
    assert repair(text) == text


def test_validate_prints_each_input_with_its_format_and_photo_counts(capsys):
    from crisislens.runtime.cli import main

    code = main(["validate", str(TWARC2), str(TELEGRAM), str(ANDROID)])
    out = capsys.readouterr().out
    assert code == 1  # rows not read
    assert "twarc2" in out and "telegram" in out and "whatsapp" in out
    line = next(line for line in out.splitlines() if "flood-search.jsonl" in line and "twarc2" in line)
    assert "4 posts" in line and "1 photo" in line and "2 photos not cached" in line and "1 row not read" in line
    assert "flood-search.jsonl:3: malformed JSON" in out


# ----------------------------------------------------------------------------- hostile input

ODD_VALUES = [None, 7, 1.5, "x", "http://[not-a-host/a.jpg", [], {}, True, ["x"], {"text": 3}, "../" * 40 + "a.jpg"]


def _paths(node, prefix=()):
    """Every path to a value inside a JSON document."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _with(doc, path, value):
    doc = json.loads(json.dumps(doc))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize("source", [TWARC2, FLAT, V1, TELEGRAM / "result.json"], ids=lambda p: p.parent.name)
def test_any_odd_value_anywhere_is_read_or_recorded_never_a_traceback(source, tmp_path):
    """Every field of every fixture, in turn, replaced by a value of another type: the read
    never raises, and every row is a post or an error with its place."""
    if source.name == "result.json":
        docs = [json.loads(source.read_text())]
    else:
        docs = [json.loads(line) for line in source.read_text().splitlines() if line.endswith("}")]
    target = tmp_path / source.name
    for doc in docs:
        for path in list(_paths(doc)):
            for value in ODD_VALUES:
                changed = _with(doc, path, value)
                target.write_text(json.dumps(changed, indent=1 if source.name == "result.json" else None) + "\n")
                report = read_posts([target])
                row_errors = [e for e in report.errors if e.line is not None or " message " in e.file]
                assert report.rows_seen == len(report.posts) + len(row_errors), (path, value, report.problems)


def test_odd_whatsapp_lines_are_read_or_recorded(tmp_path):
    chat = tmp_path / "_chat.txt"
    lines = [
        "99/99/99, 99:99 - A: impossible date",
        "1/2/3, 4:05 - : empty sender",
        "[15/03/2024, 09:20:11] B: \u200e<attached: ../../etc/passwd.jpg>",
        "15/03/2024, 09:20 - C: IMG-1.jpg (file attached)",
        "15/03/2024, 09:21 - D: \u202e\x1b]0;title\x07 escape",
        "text before nothing",
    ]
    chat.write_text("loose line first\n" + "\n".join(lines) + "\n")
    report = read_posts([chat])
    assert report.rows_seen == len(report.posts) + len(report.errors)
    assert any("before the first dated message" in e.message for e in report.errors)
