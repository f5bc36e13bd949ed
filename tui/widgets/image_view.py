"""The post's photo in the terminal, with the rationale patches drawn on it.

`overlay` draws on the photo itself (so every renderer shows the same thing): patches outside
the rationale are dimmed, each patch is tinted by its score, and the top-k patches get an amber
outline. The 7×7 grid is mapped back through the model's resize + centre crop
(`runtime.preprocess.patch_boxes`), so the boxes sit where the model looked.

Renderers: `halfblock` is our own, deterministic (snapshot tests use it): two pixels per cell,
"▀" with the upper pixel as foreground and the lower as background. `auto`, `kitty`, `sixel`
and `unicode` use textual-image, whose terminal detection must run before the app takes the
terminal (`load_renderer`). `none` shows a text note instead of the picture.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Container
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from crisislens.runtime.preprocessing import ImageError, check_image, open_photo, patch_boxes
from crisislens.tui.theme import RATIONALE

RENDERERS = ("auto", "halfblock", "kitty", "sixel", "unicode", "none")
TOP_K = 5
OUTLINE = tuple(int(RATIONALE[i : i + 2], 16) for i in (1, 3, 5))
DIM = 120  # how dark a patch with no weight gets (0-255)
INLINE_PIXELS = 4_000_000  # decoded at once (tens of ms); a larger photo in a worker thread


def top_patches(grid: Any, k: int = TOP_K) -> list[int]:
    """Row-major indices of the k highest-scoring patches (ties: lower index first)."""
    flat = [float(v) for row in grid for v in row]
    return sorted(range(len(flat)), key=lambda i: (-flat[i], i))[:k]


def overlay(image: Image.Image, grid: Any, k: int = TOP_K, outline: int | None = None) -> Image.Image:
    """`image` (upright RGB) with the patch scores drawn on it; `outline` is the box line width
    in pixels (default: about 1% of the shorter side)."""
    image = image.convert("RGB")
    flat = [float(v) for row in grid for v in row]
    boxes = patch_boxes(original_size=image.size)
    dim = Image.new("L", image.size, 0)  # per-pixel darkening: 0 = keep, 255 = black
    draw_dim = ImageDraw.Draw(dim)
    draw_dim.rectangle((0, 0, *image.size), fill=DIM)  # outside the centre crop the model saw
    for (left, top, right, bottom), score in zip(boxes, flat):
        draw_dim.rectangle((left, top, right, bottom), fill=round(DIM * (1 - max(0.0, min(1.0, score)))))
    out = Image.composite(Image.new("RGB", image.size, (0, 0, 0)), image, dim)
    draw = ImageDraw.Draw(out)
    width = outline or max(2, round(min(image.size) / 100))
    for i in top_patches(grid, k):
        left, top, right, bottom = boxes[i]
        draw.rectangle((left, top, right - 1, bottom - 1), outline=OUTLINE, width=width)
    return out


def load_photo(path: str | Path) -> Image.Image:
    """The photo upright (EXIF orientation applied), as RGB, at most 2048 pixels a side, through
    triage's bounded loader (`open_photo`: photo formats only, pixel and aspect limits checked from
    the header, so a decompression bomb is refused, never decoded); raises `ImageError`."""
    return open_photo(path)[0]


def halfblock_strips(image: Image.Image, width: int, height: int, grid: Any = None) -> list[Strip]:
    """`image` fitted into width × height cells (aspect kept; a cell is ~1:2), one Strip per row.
    With `grid` the patches are drawn after shrinking, with 1-pixel outlines that stay visible."""
    if width <= 0 or height <= 0:
        return []
    scale = min(width / image.width, 2 * height / image.height)
    w, h = max(1, round(image.width * scale)), max(2, round(image.height * scale))
    h += h % 2
    small = image.resize((w, h), Image.Resampling.BILINEAR)
    if grid is not None:
        small = overlay(small, grid, outline=1)
    px = small.load()
    strips = []
    for row in range(h // 2):
        segs = [Segment("▀", Style(color=Color.from_rgb(*px[x, 2 * row]), bgcolor=Color.from_rgb(*px[x, 2 * row + 1])))
                for x in range(w)]
        strips.append(Strip(segs, w))
    return strips


class HalfBlockImage(Widget):
    """A deterministic picture made of half-block cells."""

    DEFAULT_CSS = "HalfBlockImage { width: 1fr; height: 1fr; }"

    def __init__(self, image: Image.Image | None = None, grid: Any = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._pil = image
        self._grid = grid
        self._cells: list[Strip] = []
        self._strip_size: tuple[int, int] = (0, 0)

    @property
    def image(self) -> Image.Image | None:
        return self._pil

    @image.setter
    def image(self, value: Image.Image | None) -> None:
        self._pil = value
        self._strip_size = (0, 0)
        self.refresh()

    def render_line(self, y: int) -> Strip:
        size = (self.size.width, self.size.height)
        if self._pil is None:
            return Strip.blank(self.size.width)
        if size != self._strip_size:
            self._cells, self._strip_size = halfblock_strips(self._pil, *size, grid=self._grid), size
        if y < len(self._cells):
            strip = self._cells[y]
            pad = (self.size.width - strip.cell_length) // 2  # centred
            return Strip([Segment(" " * pad), *strip]).adjust_cell_length(self.size.width) if pad > 0 else strip
        return Strip.blank(self.size.width)


_TEXTUAL_IMAGE: dict[str, type[Widget]] = {}


def load_renderer(name: str) -> str:
    """Pick the image renderer before the app starts (textual-image queries the terminal on
    import, which is impossible once Textual owns it). Returns the name actually used: `auto`
    falls back to `halfblock` when textual-image is missing."""
    if name not in RENDERERS:
        raise ValueError(f"unknown image renderer {name!r}; expected one of {', '.join(RENDERERS)}")
    if name in ("halfblock", "none"):
        return name
    try:
        import textual_image.widget as ti  # queries the terminal: kitty graphics, sixel, or cells
    except ImportError:
        if name == "auto":
            return "halfblock"
        raise
    _TEXTUAL_IMAGE.update({"auto": ti.Image, "kitty": ti.TGPImage, "sixel": ti.SixelImage, "unicode": ti.UnicodeImage})
    return name


class PatchImage(Container):
    """The detail pane's photo: the picture with its rationale patches, or a note why not."""

    DEFAULT_CSS = "PatchImage { height: auto; } PatchImage > .picture { height: 16; }"

    def __init__(self, renderer: str = "halfblock", **kwargs: Any):
        super().__init__(**kwargs)
        self.renderer = renderer
        self._picture: Widget | None = None
        self._path: str | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="image-note")

    def _note(self, text: Text | str) -> None:
        self.query_one("#image-note", Static).update(text if isinstance(text, Text) else Text(text, style="dim"))

    def show(self, path: str | None, grid: Any) -> list[str]:
        """Show the photo at `path` with `grid` drawn on it; returns warnings to display. A photo
        over `INLINE_PIXELS` is decoded in a worker thread (the app never waits on a photo) and
        drawn when ready; a problem found then is shown in the photo's note."""
        if self._picture is not None:
            self._picture.remove()
            self._picture = None
        self._path = path
        if path is None:
            self.display = False
            return []
        self.display = True
        try:
            width, height = check_image(path)  # the header only: cheap, and bounded
        except ImageError as exc:
            return self._draw(path, grid, None, exc)
        if width * height <= INLINE_PIXELS:
            return self._draw(path, grid, *_load(path))
        self._note(f"loading the photo ({width}×{height})…")
        self.run_worker(partial(self._load_in_thread, path, grid), thread=True, exclusive=True, group="photo")
        return []

    def _load_in_thread(self, path: str, grid: Any) -> None:
        photo, error = _load(path)
        self.app.call_from_thread(self._loaded, path, grid, photo, error)

    def _loaded(self, path: str, grid: Any, photo: Image.Image | None, error: ImageError | None) -> None:
        if path != self._path:  # another post is shown by now
            return
        warnings = self._draw(path, grid, photo, error)
        if warnings:
            self._note(Text("; ".join(warnings), style="dim"))

    def _draw(self, path: str, grid: Any, photo: Image.Image | None, error: ImageError | None) -> list[str]:
        if photo is None:
            if error is not None and error.problem == "file not found":
                self._note("no photo to show")
                return [f"photo not found: {path}"]
            self._note("photo could not be shown")
            return [f"photo {Path(path).name}: {error.problem if error else 'cannot be read'}"]
        note = Text(f"photo {photo.width}×{photo.height}", style="dim")
        note.append(f"  amber boxes: the {TOP_K} patches that weighed most; dimmed: little weight" if grid is not None
                    else "  (no patch rationale: the model did not use the photo)", style="dim")
        self._note(note)
        if self.renderer == "none":
            return []
        if self.renderer == "halfblock" or self.renderer not in _TEXTUAL_IMAGE:
            self._picture = HalfBlockImage(photo, grid, classes="picture")
        else:
            picture = overlay(photo, grid) if grid is not None else photo
            self._picture = _TEXTUAL_IMAGE[self.renderer](picture, classes="picture")
        self.mount(self._picture, before=0)
        return []


def _load(path: str) -> tuple[Image.Image | None, ImageError | None]:
    try:
        return load_photo(path), None
    except ImageError as exc:
        return None, exc
    except (OSError, ValueError) as exc:  # the file changed under us: read as damaged
        return None, ImageError(path, f"cannot be read ({type(exc).__name__})")
