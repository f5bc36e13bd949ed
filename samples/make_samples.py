"""Rebuild samples/ from CrisisMMD (../shared/data): the demo posts `make demo` triages.

30 real posts of the 2017 Sri Lanka floods, the one CrisisMMD event whose photos we have, from
the held-out humanitarian splits (never trained on): every post of test and dev that is not
`not_humanitarian` (10), plus the first 20 `not_humanitarian` test posts by image id, so the
demo shows every kind of post a responder meets. Gold labels are merged to the 5 classes.

    python samples/make_samples.py [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

from crisislens.runtime.labels import to_humanitarian5

HERE = Path(__file__).resolve().parent
TASK = "crisismmd/task_humanitarian_text_img_agreed_lab_{split}.tsv"
EVENT = "srilanka_floods"
LIMIT = 30


def _rows(root: Path, split: str) -> list[dict[str, str]]:
    with (root / TASK.format(split=split)).open(encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return sorted((r for r in rows if r["event_name"] == EVENT), key=lambda r: r["image_id"])


def choose(root: Path) -> list[dict[str, str]]:
    test, dev = _rows(root, "test"), _rows(root, "dev")
    relevant = [r for r in test + dev if to_humanitarian5(r["label"]) != "not_humanitarian"]
    other = [r for r in test if to_humanitarian5(r["label"]) == "not_humanitarian"]
    return (relevant + other)[:LIMIT]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=HERE.parent.parent / "shared" / "data")
    args = parser.parse_args()
    images = HERE / "images"
    shutil.rmtree(images, ignore_errors=True)
    images.mkdir()
    with (HERE / "posts.jsonl").open("w", encoding="utf-8") as out:
        for row in choose(args.data_root):
            src = args.data_root / "images" / "crisismmd" / row["image"].removeprefix("data_image/")
            name = f"{row['image_id']}{src.suffix}"
            shutil.copyfile(src, images / name)
            record = {"id": row["image_id"], "text": row["tweet_text"], "image": f"images/{name}",
                      "label": to_humanitarian5(row["label"]), "source": f"CrisisMMD {EVENT}",
                      "tweet_id": row["tweet_id"]}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"wrote {sum(1 for _ in (HERE / 'posts.jsonl').open())} posts to {HERE / 'posts.jsonl'}")


if __name__ == "__main__":
    main()
