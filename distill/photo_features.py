"""Frozen photo features for the teacher v2: every photo under the data root, once per tower.

For each file in `images/image_labels.tsv` (CrisisMMD photos and the AIDR/MEDIC photos), the
chosen EfficientNet-Lite's last feature map (its 1x1 head, 1280 channels) is resampled to the
7 x 7 patch grid every model and the runtime share, and stored as float16 in
`<cache>/photos-<tower>.npz` with the relative paths as keys. The photo is decoded by the
runtime's own preprocessing at the tower's native size, so training and inference agree.

`crisislens distill teacher-v2 photo-features [--tower lite1]` (default: all three, for the tower comparison).
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from crisislens.distill.pretrained import LITE_SIZES, load_efficientnet_lite
from crisislens.runtime.preprocessing import ImageConfig, ImageError, load_image

GRID = 7


def photo_paths(root: Path) -> list[str]:
    """Relative paths (under `images/`) of every CrisisMMD photo (the tweets' own) and every other
    photo with a MEDIC humanitarian label, in file order: the photos training and evaluation use."""
    with (root / "images" / "image_labels.tsv").open(encoding="utf-8", newline="") as f:
        return [row["relpath"] for row in csv.DictReader(f, delimiter="\t")
                if row.get("relpath") and (row["relpath"].startswith("crisismmd/") or row.get("medic_humanitarian"))]


def cache_file(cache: Path, tower: str) -> Path:
    return cache / f"photos-{tower}.npz"


@torch.no_grad()
def extract(root: Path, cache: Path, tower: str, batch: int = 16) -> Path:
    """Write `<cache>/photos-<tower>.npz`: keys (relpaths), grid [N, 49, 1280] float16, ok [N]."""
    net = load_efficientnet_lite(tower).eval()
    config = ImageConfig(size=LITE_SIZES[tower])
    paths = photo_paths(root)
    grids = np.zeros((len(paths), GRID * GRID, 1280), np.float16)
    ok = np.zeros(len(paths), bool)
    started = time.perf_counter()
    for lo in range(0, len(paths), batch):
        pixels, rows = [], []
        for i in range(lo, min(lo + batch, len(paths))):
            try:
                pixels.append(load_image(root / "images" / paths[i], config)[0])
                rows.append(i)
            except ImageError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
        if not rows:
            continue
        grid = net.extract_features(torch.from_numpy(np.stack(pixels)))
        grid = F.interpolate(grid, size=(GRID, GRID), mode="bilinear", align_corners=False)
        grids[rows] = grid.flatten(2).transpose(1, 2).numpy().astype(np.float16)
        ok[rows] = True
        done = min(lo + batch, len(paths))
        rate = done / (time.perf_counter() - started)
        print(f"\r{tower}: {done}/{len(paths)} ({rate:.1f}/s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    cache.mkdir(parents=True, exist_ok=True)
    out = cache_file(cache, tower)
    np.savez(out, keys=np.array(paths), grid=grids, ok=ok, size=config.size)
    return out

