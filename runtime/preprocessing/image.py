"""Photo -> the model's normalised pixel array: bounded, defensive decoding (`load_image`,
`check_image`, `open_photo`), the resize and crop (`preprocess_pil`) and the patch grid mapped back
onto the photo (`patch_boxes`). The shared-preprocessing contract is the package's: see
`crisislens.runtime.preprocessing`.
"""

from __future__ import annotations

import re
import stat
import threading
import warnings as _warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from crisislens.runtime.errors import CrisisLensError
from crisislens.runtime.preprocessing.config import _check_int, _config_from_dict, _float_triple

RESIZE_MODES = ("shorter_then_center_crop",)
# The formats photos in posts come in. Every other Pillow plugin stays closed to untrusted files
# (a `.jpg` holding PostScript would otherwise reach the EPS plugin and Ghostscript).
PHOTO_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG includes MPO (phone photos)
# The shorter side is scaled to `size` before the crop: a 1 x 200,000 strip would become
# 224 x 44,800,000 pixels. Panoramas stay far below this; such strips are refused from the header.
MAX_ASPECT_RATIO = 50


@dataclass(frozen=True)
class ImageConfig:
    """How a photo becomes the model's input; saved in bundles and feature caches.

    `mean`/`std` are in 0-255 pixel units, per RGB channel. `max_pixels` refuses larger images
    before decoding (decompression-bomb guard); Pillow's own limit (`Image.MAX_IMAGE_PIXELS`,
    about 89 M pixels) still applies above it. `patch_grid` is the side of the model's patch
    grid (EfficientNet-Lite0 at 224 px gives 7 x 7).
    """

    size: int = 224
    resize: str = "shorter_then_center_crop"
    # EfficientNet-Lite0's TF normalisation: its pretrained stem BatchNorm statistics match this, not ImageNet's.
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0)
    std: tuple[float, float, float] = (128.0, 128.0, 128.0)
    max_pixels: int = 40_000_000
    patch_grid: int = 7

    def __post_init__(self) -> None:
        _check_int("ImageConfig", "size", self.size, 1)
        _check_int("ImageConfig", "max_pixels", self.max_pixels, 1)
        _check_int("ImageConfig", "patch_grid", self.patch_grid, 1)
        if self.patch_grid > self.size:
            raise ValueError(f"ImageConfig.patch_grid ({self.patch_grid}) cannot exceed size ({self.size})")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"ImageConfig.resize {self.resize!r} is not one of: {', '.join(RESIZE_MODES)}")
        object.__setattr__(self, "mean", _float_triple("ImageConfig", "mean", self.mean))
        std = _float_triple("ImageConfig", "std", self.std)
        if min(std) <= 0:
            raise ValueError(f"ImageConfig.std must be positive, got {self.std!r}")
        object.__setattr__(self, "std", std)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImageConfig:
        return _config_from_dict(cls, data)


class ImageError(CrisisLensError, ValueError):
    """An image file that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self) -> tuple[Any, ...]:
        # DataLoader workers send exceptions between processes: keep them picklable.
        return (type(self), (self.path, self.problem))


class _DecodeFailed(Exception):
    """Pixel decoding stopped early (truncated or damaged data): worth a partial retry."""


# Pillow only offers a process-wide switch for truncated loading. The lock keeps two retries from
# restoring it under each other's feet; a decode in another thread during a retry also sees it on.
_TRUNCATED_LOCK = threading.Lock()
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def load_image(path: str | Path, config: ImageConfig | None = None) -> tuple[np.ndarray, list[str]]:
    """Decode the image file at `path` into the model's input: float32 (3, size, size) and warnings.

    Raises `ImageError` for a file that is missing, a directory, empty, not an image, larger than
    `config.max_pixels` or so damaged that no pixel decodes. A truncated file is decoded as far as
    its data goes, with a warning. No file handle stays open.
    """
    config = config or ImageConfig()
    path = Path(path)
    _check_file(path)
    try:
        return _decode(path, config, partial=False)
    except _DecodeFailed as first:
        reason = str(first)
    with _TRUNCATED_LOCK:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            pixels, notes = _decode(path, config, partial=True)
        except _DecodeFailed as second:
            raise ImageError(path, f"image data damaged, nothing could be decoded ({second})") from None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous
    return pixels, [f"truncated or damaged image data ({reason}): decoded partially", *notes]


def check_image(path: str | Path, config: ImageConfig | None = None) -> tuple[int, int]:
    """The checks `load_image` makes before decoding any pixel, and only those: the file's header
    is read, its pixels are not. Returns (width, height); raises `ImageError` for a file that
    `load_image` would refuse for its header (missing, a directory, empty, not an image, a damaged
    header, too many pixels, no pixels). Damage after the header is found only by decoding.
    """
    config = config or ImageConfig()
    path = Path(path)
    _check_file(path)
    with _opened(path, config) as image:
        return image.size


def open_photo(
    path: str | Path, config: ImageConfig | None = None, max_side: int = 2048
) -> tuple[Image.Image, list[str]]:
    """The photo at `path` to show a person: upright RGB, at most `max_side` pixels a side, and
    warnings. `load_image`'s checks come first (photo formats, pixel and aspect-ratio limits from
    the header); a JPEG is decoded at a reduced scale. Raises `ImageError` like `load_image`."""
    config = config or ImageConfig()
    path = Path(path)
    _check_file(path)
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        with _opened(path, config) as image:
            image.draft("RGB", (max_side, max_side))  # JPEG: decode at 1/2, 1/4 or 1/8 scale
            try:
                image.load()
                upright, notes = _upright(image)  # a copy: the pixels outlive the open file
                rgb, mode_notes = to_rgb(upright)
            except Exception as exc:  # a photo that cannot be decoded cannot be shown either
                raise ImageError(path, f"cannot decode image data ({type(exc).__name__}: {exc})") from None
    rgb.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return rgb, notes + mode_notes + _pillow_notes(caught)


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image file")
    if not path.exists():
        raise ImageError(path, "file not found")
    try:
        info = path.stat()
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block the read forever
        raise ImageError(path, "not a regular file (a pipe, socket or device); not read")
    if info.st_size == 0:
        raise ImageError(path, "empty file (0 bytes)")


@contextmanager
def _opened(path: Path, config: ImageConfig) -> Iterator[Image.Image]:
    """The image at `path`, opened (header parsed, no pixel decoded) and its size checked."""
    with _warnings.catch_warnings():
        # Pillow warns (not raises) between 1x and 2x its limit: make that a refusal too.
        _warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=PHOTO_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            found = _BOMB_PIXELS.search(str(exc))
            pixels = f"{int(found.group(1)):,} pixels" if found else "its size"
            raise ImageError(
                path,
                f"image too large: {pixels} is over the limit of "
                f"{min(config.max_pixels, Image.MAX_IMAGE_PIXELS or config.max_pixels):,} pixels "
                "(possible decompression bomb)",
            ) from None
        except UnidentifiedImageError:
            # A format outside PHOTO_FORMATS is "unknown" here too: its plugin never sees the file.
            raise ImageError(path, "not an image file (unknown format or damaged header)") from None
        except OSError as exc:
            if exc.errno is None:  # Pillow's own parse errors carry no errno
                raise ImageError(path, f"damaged image header ({exc})") from None
            raise ImageError(path, f"cannot read file ({exc.strerror})") from None
        except Exception as exc:  # untrusted bytes: any parser failure means unusable
            raise ImageError(path, f"damaged image header ({type(exc).__name__}: {exc})") from None
        with image:
            width, height = image.size
            if width * height > config.max_pixels:
                raise ImageError(
                    path,
                    f"image too large: {width}x{height} = {width * height:,} pixels is over "
                    f"the limit of {config.max_pixels:,} pixels (ImageConfig.max_pixels)",
                )
            if width == 0 or height == 0:
                raise ImageError(path, f"image has no pixels ({width}x{height})")
            if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
                raise ImageError(
                    path,
                    f"image too elongated: {width}x{height} has an aspect ratio over {MAX_ASPECT_RATIO}:1 "
                    "(resizing it would take gigabytes)",
                )
            yield image


def _decode(path: Path, config: ImageConfig, *, partial: bool) -> tuple[np.ndarray, list[str]]:
    """One decoding attempt. Pillow's warnings about the file (corrupt EXIF, skipped tags) become
    the photo's notes instead of lines on stderr through the progress bar."""
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        pixels, notes = _decode_open(path, config, partial=partial)
    return pixels, notes + _pillow_notes(caught)


def _pillow_notes(caught: list[_warnings.WarningMessage]) -> list[str]:
    """Pillow's warnings about a file (corrupt EXIF, skipped tags) as the photo's notes, once each."""
    return list(dict.fromkeys(f"image metadata: {w.message}" for w in caught if issubclass(w.category, UserWarning)))


def _decode_open(path: Path, config: ImageConfig, *, partial: bool) -> tuple[np.ndarray, list[str]]:
    """One decoding attempt; everything happens while the file is open (closing drops the pixels)."""
    with _opened(path, config) as image:
        notes: list[str] = []
        try:
            if getattr(image, "is_animated", False):
                notes.append("animated or multi-frame image: only the first frame is used")
                image.seek(0)
            image.load()
        except OSError as exc:
            raise _DecodeFailed(str(exc) or type(exc).__name__) from None
        except Exception as exc:  # any other decoder failure
            raise ImageError(path, f"cannot decode image data ({type(exc).__name__}: {exc})") from None
        if partial and _is_uniform(image):
            # Truncated before the first pixel: the "image" is the decoder's fill colour.
            raise _DecodeFailed("no pixel data before the end of the file")
        upright, orient_notes = _upright(image)
        try:
            rgb, mode_notes = to_rgb(upright)
        except ValueError as exc:
            raise ImageError(path, str(exc)) from None
        return preprocess_pil(rgb, config), notes + orient_notes + mode_notes


def _is_uniform(image: Image.Image) -> bool:
    extrema = image.getextrema()
    bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
    return all(low == high for low, high in bands)


def _upright(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """Apply the EXIF Orientation tag (phones store photos sideways and set this tag)."""
    try:
        return ImageOps.exif_transpose(image), []
    except Exception as exc:  # malformed EXIF must not cost us the photo
        return image.copy(), [f"unreadable EXIF orientation ignored ({type(exc).__name__})"]


_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def to_rgb(image: Image.Image) -> tuple[Image.Image, list[str]]:
    """Any Pillow mode -> 8-bit RGB, and warnings. Transparency is composited on white.

    16-bit modes are scaled to 8 bits; 32-bit integer ("I") and float ("F") images have no fixed
    range, so values in [0, 255] are taken as 8-bit, integers up to 65535 as 16-bit, floats in
    [0, 1] as normalised, and anything else is stretched from its minimum to its maximum (warned).
    Raises `ValueError` for a mode Pillow cannot convert.
    """
    if image.mode == "RGB" and "transparency" not in image.info:
        return image, []
    if image.mode in _HIGH_DEPTH_MODES:
        grey, notes = _high_depth_to_8bit(image)
        return grey.convert("RGB"), notes
    try:
        if image.mode in _ALPHA_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB"), []
        return image.convert("RGB"), []
    except (ValueError, OSError) as exc:
        raise ValueError(f"cannot convert colour mode {image.mode} to RGB ({exc})") from None


def _high_depth_to_8bit(image: Image.Image) -> tuple[Image.Image, list[str]]:
    values = np.asarray(image)
    notes: list[str] = []
    if image.mode.startswith("I;16"):
        scaled = (values.astype(np.uint32) * 255 + 32767) // 65535  # round to nearest, in integers
        return Image.fromarray(scaled.astype(np.uint8)), notes
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        notes.append("non-finite pixel values set to 0")
    low, high = float(values.min()), float(values.max())
    if image.mode == "F" and low >= 0.0 and high <= 1.0:
        values = values * 255.0
    elif low >= 0.0 and high <= 255.0:
        pass
    elif image.mode == "I" and low >= 0.0 and high <= 65535.0:
        values = values * (255.0 / 65535.0)
    else:
        values = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        notes.append(f"{image.mode} image with values in [{low:g}, {high:g}] stretched to 0-255")
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8)), notes


def _resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Size after scaling the shorter side to `size`; integer round-half-up so every caller agrees."""
    short = min(width, height)

    def scale(side: int) -> int:
        return max(size, (2 * side * size + short) // (2 * short))

    return (size, scale(height)) if width <= height else (scale(width), size)


def _crop_origin(resized: tuple[int, int], size: int) -> tuple[int, int]:
    return (resized[0] - size) // 2, (resized[1] - size) // 2


def preprocess_pil(image: Image.Image, config: ImageConfig | None = None) -> np.ndarray:
    """Resize (shorter side, BICUBIC), centre-crop and normalise an RGB image: float32 (3, size, size).

    This is `load_image` after decoding, for code that already holds an upright RGB image
    (`to_rgb` converts other modes the way `load_image` does).
    """
    config = config or ImageConfig()
    if image.mode != "RGB":
        raise ValueError(f"preprocess_pil needs an RGB image, got mode {image.mode} (convert it with to_rgb)")
    size = config.size
    resized = _resized_size(image.width, image.height, size)
    if resized != image.size:
        image = image.resize(resized, Image.Resampling.BICUBIC)
    if resized != (size, size):
        left, top = _crop_origin(resized, size)
        image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.float32)
    pixels = (pixels - np.asarray(config.mean, np.float32)) / np.asarray(config.std, np.float32)  # type: ignore[assignment]
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


Box = tuple[float, float, float, float]


def patch_boxes(config: ImageConfig | None = None, original_size: tuple[int, int] | None = None) -> list[Box]:
    """(left, top, right, bottom) of each patch of the grid, row-major (index = row * grid + col).

    Without `original_size` the boxes are in the cropped square's pixels and tile it exactly.
    With `original_size=(width, height)` of the upright image (after EXIF orientation) they are
    mapped back through the resize and crop into that image's pixels; they then cover only the
    centre crop the model saw.
    """
    config = config or ImageConfig()
    size, grid = config.size, config.patch_grid
    edges = [i * size / grid for i in range(grid + 1)]
    boxes = [(edges[c], edges[r], edges[c + 1], edges[r + 1]) for r in range(grid) for c in range(grid)]
    if original_size is None:
        return boxes
    width, height = original_size
    if width <= 0 or height <= 0:
        raise ValueError(f"original_size must be positive, got {original_size!r}")
    resized = _resized_size(width, height, size)
    left, top = _crop_origin(resized, size)
    sx, sy = width / resized[0], height / resized[1]
    return [((x0 + left) * sx, (y0 + top) * sy, (x1 + left) * sx, (y1 + top) * sy) for x0, y0, x1, y1 in boxes]
