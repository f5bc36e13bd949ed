"""The labelled datasets a bundle is scored on, by name (`crisismmd:test`), under the data root
(`crisislens.runtime.settings`), and reading labelled posts from any input the readers take.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from crisislens.runtime.errors import DatasetError
from crisislens.runtime.readers import ReadReport, read_posts
from crisislens.runtime.schema import Post

DATASETS = {
    # name: (file under the data root, image root under the data root)
    "crisismmd:train": ("crisismmd/task_humanitarian_text_img_agreed_lab_train.tsv", "images/crisismmd"),
    "crisismmd:dev": ("crisismmd/task_humanitarian_text_img_agreed_lab_dev.tsv", "images/crisismmd"),
    "crisismmd:test": ("crisismmd/task_humanitarian_text_img_agreed_lab_test.tsv", "images/crisismmd"),
}


def dataset_inputs(name: str, root: Path) -> tuple[list[Path], Path]:
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    file, images = DATASETS[name]
    path = root / file
    if not path.is_file():
        raise FileNotFoundError(f"{path}: dataset file not found (data root {root})")
    return [path], root / images


def labelled_posts(inputs: Sequence[Path], image_root: Path | None = None) -> tuple[list[Post], ReadReport]:
    """The posts in `inputs` that carry a gold label (and the whole read); none is an error."""
    report = read_posts(list(inputs), image_root=image_root)
    posts = [p for p in report.posts if p.label is not None]
    if not posts:
        raise DatasetError(f"no labelled posts in {', '.join(map(str, inputs))}: records need a gold 'label'")
    return posts, report
