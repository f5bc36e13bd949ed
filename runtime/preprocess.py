"""The one preprocessing of CrisisLens: photo -> normalised pixel array, tweet -> token ids.

Training (teacher and student), the ONNX export parity checks and the torch-free runtime all
call these functions, so a post is seen the same way everywhere; there is no second copy.
Everything here is deterministic: the same file or text gives the same array, bit for bit.

Image: `load_image` decodes a file defensively (size checked from the header before any pixel
is decoded, EXIF orientation applied, every colour mode made RGB, animations reduced to their
first frame, truncated files decoded as far as they go) and `preprocess_pil` does the geometry
and normalisation: shorter side resized to `size` (Pillow BICUBIC), centre crop, then
(pixel - mean) / std in 0-255 units, channels first. `patch_boxes` maps the model's patch grid
back onto the photo so the TUI can draw patch rationales over it.

Text: `clean_text` normalises a tweet (entities, URLs, mentions, invisible characters,
whitespace) and is applied before tokenisation everywhere — `TextEncoder.encode_batch` calls it
itself, and token offsets point into the cleaned text. `words_with_scores` and
`word_mask_to_token_mask` translate between the tokens a model scores and the whitespace words
a responder reads (and the human rationales are marked on).

Problems with an input that could be repaired come back as warnings (plain strings); inputs
that cannot be used raise `ImageError` (images) or give an empty text with a warning.
"""

from __future__ import annotations

import html
import re
import threading
import unicodedata
import warnings as _warnings
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError
from tokenizers import Tokenizer

from crisislens.runtime.errors import CrisisLensError

RESIZE_MODES = ("shorter_then_center_crop",)

_C = TypeVar("_C")


def _config_from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
    """`cls(**data)`, refusing unknown keys so a typo in a saved config is not silently ignored."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__}.from_dict needs a mapping, got {type(data).__name__}")
    known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s): {', '.join(unknown)} (known: {', '.join(known)})")
    return cls(**data)


def _check_int(owner: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{owner}.{name} must be an integer >= {minimum}, got {value!r}")


def _float_triple(owner: str, name: str, value: Any) -> tuple[float, float, float]:
    try:
        triple = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        triple = ()
    if len(triple) != 3 or not all(np.isfinite(triple)):
        raise ValueError(f"{owner}.{name} must be three finite numbers (R, G, B), got {value!r}")
    return triple  # type: ignore[return-value]


# ----------------------------------------------------------------------------- image


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


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise ImageError(path, "is a directory, not an image file")
    if not path.exists():
        raise ImageError(path, "file not found")
    try:
        empty = path.stat().st_size == 0
    except OSError as exc:
        raise ImageError(path, f"cannot read file ({exc.strerror})") from None
    if empty:
        raise ImageError(path, "empty file (0 bytes)")


@contextmanager
def _opened(path: Path, config: ImageConfig) -> Iterator[Image.Image]:
    """The image at `path`, opened (header parsed, no pixel decoded) and its size checked."""
    with _warnings.catch_warnings():
        # Pillow warns (not raises) between 1x and 2x its limit: make that a refusal too.
        _warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            found = _BOMB_PIXELS.search(str(exc))
            pixels = f"{int(found.group(1)):,} pixels" if found else "its size"
            raise ImageError(path, f"image too large: {pixels} is over the limit of "
                                   f"{min(config.max_pixels, Image.MAX_IMAGE_PIXELS or config.max_pixels):,} pixels "
                                   "(possible decompression bomb)") from None
        except UnidentifiedImageError:
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
                raise ImageError(path, f"image too large: {width}x{height} = {width * height:,} pixels is over "
                                       f"the limit of {config.max_pixels:,} pixels (ImageConfig.max_pixels)")
            if width == 0 or height == 0:
                raise ImageError(path, f"image has no pixels ({width}x{height})")
            yield image


def _decode(path: Path, config: ImageConfig, *, partial: bool) -> tuple[np.ndarray, list[str]]:
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
    return all(low == high for low, high in bands)  # type: ignore[misc]


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
    pixels = (pixels - np.asarray(config.mean, np.float32)) / np.asarray(config.std, np.float32)
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
    return [((l + left) * sx, (t + top) * sy, (r + left) * sx, (b + top) * sy) for l, t, r, b in boxes]


# ----------------------------------------------------------------------------- text


@dataclass(frozen=True)
class TextConfig:
    """How a tweet becomes token ids: `max_length` tokens including [CLS]/[SEP], and at most
    `max_chars` characters of cleaned text (so a pasted essay cannot stall tokenisation)."""

    max_length: int = 64
    max_chars: int = 2000

    def __post_init__(self) -> None:
        _check_int("TextConfig", "max_length", self.max_length, 1)
        _check_int("TextConfig", "max_chars", self.max_chars, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TextConfig:
        return _config_from_dict(cls, data)


_SURROGATE = re.compile("[\ud800-\udfff]")
# ANSI escape sequences (CSI "ESC [ ... m", OSC "ESC ] ... BEL", two-byte ESC x): dropped whole so no "[31m" is left.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# C0/C1 controls that are not whitespace (whitespace ones become spaces below), zero-width and
# bidi controls (U+061C, U+200B-U+200F, U+202A-U+202E, U+2066-U+2069), word joiners, soft hyphen, BOM.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"
    "\u00ad\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_URL_TAIL = ".,;:!?)]}'\"\u2026\u00bb\u201d\u2019"  # punctuation after a URL belongs to the sentence
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z0-9_]+")
_SPACES = re.compile(r"\s+")


def _url_to_word(match: re.Match[str]) -> str:
    url = match.group(0)
    kept = url.rstrip(_URL_TAIL)
    return "url" + url[len(kept):]


def clean_text(text: str | None, config: TextConfig | None = None) -> tuple[str, list[str]]:
    """Normalise a tweet the way training and runtime both see it; returns (text, warnings).

    In order: lone surrogates -> U+FFFD; HTML entities unescaped (&amp; -> &); ANSI escapes,
    non-whitespace control characters and zero-width/bidi controls removed; Unicode NFC;
    URLs (http://, https://, www.) -> `url`; @mentions -> `@user`; whitespace runs -> one space,
    ends stripped; then cut to `config.max_chars` (at a space when one is in the second half).
    None or nothing left -> "" with the warning "empty text". Pure: no state, no I/O.
    """
    config = config or TextConfig()
    if text is None:
        return "", ["empty text"]
    if not isinstance(text, str):
        raise TypeError(f"clean_text needs a str or None, got {type(text).__name__}")
    notes: list[str] = []
    if _SURROGATE.search(text):
        text = _SURROGATE.sub("\ufffd", text)  # the tokenizer (Rust) cannot take lone surrogates
        notes.append("invalid code points (lone surrogates) replaced with U+FFFD")
    text = html.unescape(text)  # before removal: "&#8203;" is a zero-width space too
    text = _INVISIBLE.sub("", _ANSI.sub("", text))
    text = unicodedata.normalize("NFC", text)
    text = _MENTION.sub("@user", _URL.sub(_url_to_word, text))
    text = _SPACES.sub(" ", text).strip()
    if not text:
        return "", [*notes, "empty text"]
    if len(text) > config.max_chars:
        original = len(text)
        cut = text[: config.max_chars]
        space = cut.rfind(" ")
        if text[config.max_chars] != " " and space > config.max_chars // 2:
            cut = cut[:space]
        text = cut.rstrip()
        notes.append(f"text cut to {len(text)} characters (was {original}, max_chars={config.max_chars})")
    return text, notes


@dataclass
class TextBatch:
    """Token ids of a batch of texts, padded to one length L.

    `offsets[i][t]` is the (start, end) character range of token t in `cleaned[i]`, (0, 0) for
    special and padding tokens; `warnings[i]` are the cleaning and truncation warnings of text i.
    """

    input_ids: np.ndarray  # int64 [B, L]
    attention_mask: np.ndarray  # int64 [B, L], 1 on real tokens (specials included)
    offsets: list[list[tuple[int, int]]]
    cleaned: list[str]
    warnings: list[list[str]]

    def __len__(self) -> int:
        return len(self.cleaned)


class TextEncoder:
    """`clean_text` + a `tokenizers.Tokenizer` with CrisisLens' own truncation and padding.

    The tokenizer is copied and any padding/truncation stored in its tokenizer.json is switched
    off (the MiniLM file pads everything to 128): content tokens are cut so that with the
    special tokens a text has at most `config.max_length` tokens, and `encode_batch` pads to the
    batch's longest text or to a fixed `pad_to`.
    """

    def __init__(self, tokenizer: Tokenizer, config: TextConfig | None = None):
        self.config = config or TextConfig()
        stored_padding = tokenizer.padding
        self.tokenizer = Tokenizer.from_str(tokenizer.to_str())  # a copy: the caller's object is left as it was
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        pad_id = stored_padding["pad_id"] if stored_padding else self.tokenizer.token_to_id("[PAD]")
        if pad_id is None:
            raise ValueError("the tokenizer has no [PAD] token and no padding settings to take a pad id from")
        self.pad_id: int = int(pad_id)
        self.num_special_tokens = self.tokenizer.num_special_tokens_to_add(False)
        if self.config.max_length <= self.num_special_tokens:
            raise ValueError(f"TextConfig.max_length ({self.config.max_length}) leaves no room for text "
                             f"next to the tokenizer's {self.num_special_tokens} special tokens")

    @classmethod
    def from_file(cls, path: str | Path, config: TextConfig | None = None) -> TextEncoder:
        """Load a Hugging Face `tokenizer.json`."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: tokenizer file not found")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust side raises a bare Exception
            raise ValueError(f"{path}: not a readable tokenizer.json ({exc})") from None
        return cls(tokenizer, config)

    def encode_batch(self, texts: Sequence[str | None], pad_to: int | None = None) -> TextBatch:
        """Clean, tokenise, truncate and pad `texts`.

        L is the longest encoding in the batch, or `pad_to` (a fixed shape for export and
        TensorRT profiles; it must be at least `config.max_length` so every text fits).
        An empty text still gives [CLS] [SEP].
        """
        if isinstance(texts, str):
            raise TypeError("encode_batch takes a list of texts, not one str")
        if pad_to is not None and pad_to < self.config.max_length:
            raise ValueError(f"pad_to ({pad_to}) must be at least TextConfig.max_length ({self.config.max_length})")
        cleaned, notes = [], []
        for text in texts:
            clean, warns = clean_text(text, self.config)
            cleaned.append(clean)
            notes.append(warns)
        limit = self.config.max_length - self.num_special_tokens
        encodings = []
        for encoding, warns in zip(self.tokenizer.encode_batch(cleaned, add_special_tokens=False), notes):
            if len(encoding.ids) > limit:
                warns.append(f"text truncated to {self.config.max_length} tokens "
                             f"(was {len(encoding.ids) + self.num_special_tokens})")
                encoding.truncate(limit)
            encodings.append(self.tokenizer.post_process(encoding))
        width = pad_to if pad_to is not None else max((len(e.ids) for e in encodings), default=0)
        input_ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(encodings), width), dtype=np.int64)
        offsets: list[list[tuple[int, int]]] = []
        for i, encoding in enumerate(encodings):
            n = len(encoding.ids)
            input_ids[i, :n] = encoding.ids
            attention_mask[i, :n] = encoding.attention_mask
            row = [(0, 0) if special else (int(s), int(e))
                   for (s, e), special in zip(encoding.offsets, encoding.special_tokens_mask)]
            offsets.append(row + [(0, 0)] * (width - n))
        return TextBatch(input_ids, attention_mask, offsets, cleaned, notes)


# ----------------------------------------------------------------------------- tokens <-> words


@dataclass(frozen=True)
class WordScore:
    """A whitespace-delimited word of the cleaned text, its character range and rationale score.

    `truncated` marks a word after the last token the model saw (cut by `max_length`).
    """

    word: str
    start: int
    end: int
    score: float
    truncated: bool = False


def _word_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def _token_words(words: list[tuple[int, int]], offsets: Sequence[tuple[int, int]],
                 keep: Sequence[Any] | None) -> list[list[int]]:
    """For each token, the indices of the words its character range overlaps (none for specials)."""
    starts = [s for s, _ in words]
    out: list[list[int]] = []
    for t, (start, end) in enumerate(offsets):
        hits: list[int] = []
        if end > start and (keep is None or keep[t]):
            w = max(bisect_right(starts, start) - 1, 0)
            while w < len(words) and words[w][0] < end:
                if words[w][1] > start:
                    hits.append(w)
                w += 1
        out.append(hits)
    return out


def _check_lengths(offsets: Sequence[Any], **others: Sequence[Any] | None) -> None:
    for name, values in others.items():
        if values is not None and len(values) != len(offsets):
            raise ValueError(f"{name} has {len(values)} entries for {len(offsets)} token offsets")


def words_with_scores(text: str, offsets: Sequence[tuple[int, int]], scores: Sequence[float],
                      mask: Sequence[Any] | None = None) -> list[WordScore]:
    """Per-token scores -> per-word scores for the whitespace words of `text` (the cleaned text).

    A word's score is the maximum over the tokens inside it (so "flooding" = max("flood",
    "##ing")); tokens with an empty range (special, padding) or `mask` 0 are ignored. A word
    with no token gets 0.0, and `truncated=True` when it comes after the last scored token.
    """
    _check_lengths(offsets, scores=scores, mask=mask)
    words = _word_spans(text)
    best: list[float | None] = [None] * len(words)
    last_end = 0
    for t, hits in enumerate(_token_words(words, offsets, mask)):
        for w in hits:
            value = float(scores[t])
            best[w] = value if best[w] is None else max(best[w], value)  # type: ignore[type-var]
        if hits:
            last_end = max(last_end, offsets[t][1])
    return [WordScore(text[s:e], s, e, 0.0 if b is None else b, b is None and s >= last_end)
            for (s, e), b in zip(words, best)]


def word_mask_to_token_mask(text: str, offsets: Sequence[tuple[int, int]], word_flags: Sequence[Any]) -> np.ndarray:
    """Per-word 0/1 flags (for the whitespace words of `text`) -> per-token uint8 0/1; specials 0."""
    words = _word_spans(text)
    if len(word_flags) != len(words):
        raise ValueError(f"{len(word_flags)} word flags for {len(words)} words in the text")
    mask = np.zeros(len(offsets), dtype=np.uint8)
    for t, hits in enumerate(_token_words(words, offsets, None)):
        mask[t] = any(word_flags[w] for w in hits)
    return mask
