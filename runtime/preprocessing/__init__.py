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

from crisislens.runtime.preprocessing.image import (
    RESIZE_MODES,
    Box,
    ImageConfig,
    ImageError,
    check_image,
    load_image,
    open_photo,
    patch_boxes,
    preprocess_pil,
    to_rgb,
)
from crisislens.runtime.preprocessing.text import TextBatch, TextConfig, TextEncoder, clean_text
from crisislens.runtime.preprocessing.words import WordScore, word_mask_to_token_mask, words_with_scores

__all__ = [
    "RESIZE_MODES",
    "Box",
    "ImageConfig",
    "ImageError",
    "TextBatch",
    "TextConfig",
    "TextEncoder",
    "WordScore",
    "check_image",
    "clean_text",
    "load_image",
    "open_photo",
    "patch_boxes",
    "preprocess_pil",
    "to_rgb",
    "word_mask_to_token_mask",
    "words_with_scores",
]
