"""Single-modality comparison models for the teacher report, trained on the same cached features.

- `TextOnlyModel`: fine-tuned MiniLM (the same frozen lower / fine-tuned upper split as the
  teacher) with a classifier on [CLS] — what text alone gets.
- `ImageOnlyModel`: EfficientNet-Lite0 features (frozen, mean-pooled) with a linear classifier —
  what the photo alone gets.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from crisislens.distill.data import Example
from crisislens.distill.teacher import TeacherInputs, TextTower, load_minilm
from crisislens.runtime.labels import LABEL_NAMES, label_index
from crisislens.evaluation.metrics import classification_report


class TextOnlyModel(nn.Module):
    def __init__(self, bert: nn.Module, frozen_layers: int = 4, num_labels: int = len(LABEL_NAMES)):
        super().__init__()
        self.text = TextTower(bert, frozen_layers)
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(bert.config.hidden_size, num_labels))

    def forward(self, inputs: TeacherInputs) -> torch.Tensor:
        states = inputs.text_states.float() if inputs.text_states is not None else self.text.lower(
            inputs.input_ids, inputs.attention_mask)
        return self.head(self.text.upper(states, inputs.attention_mask.bool())[:, 0])


class ImageOnlyModel(nn.Module):
    def __init__(self, channels: int = 1280, num_labels: int = len(LABEL_NAMES)):
        super().__init__()
        self.head = nn.Sequential(nn.LayerNorm(channels), nn.Dropout(0.2), nn.Linear(channels, num_labels))

    def forward(self, inputs: TeacherInputs) -> torch.Tensor:
        return self.head(inputs.image_features.float().mean(1))


def build(kind: str) -> nn.Module:
    return TextOnlyModel(load_minilm()) if kind == "text" else ImageOnlyModel()


Batcher = Callable[[Sequence[Example]], Any]


@torch.no_grad()
def predict_probs(model: nn.Module, batcher: Batcher, rows: Sequence[Example], batch_size: int = 64) -> np.ndarray:
    model.eval()
    out = [model(batcher(rows[b : b + batch_size])[0]).softmax(-1).numpy() for b in range(0, len(rows), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, len(LABEL_NAMES)))


def macro_f1(model: nn.Module, batcher: Batcher, rows: Sequence[Example]) -> float:
    probs = predict_probs(model, batcher, rows)
    return classification_report([e.label for e in rows], [LABEL_NAMES[i] for i in probs.argmax(1)], LABEL_NAMES).macro_f1


def train_unimodal(kind: str, train: Sequence[Example], dev: Sequence[Example], batcher: Batcher, out: Path, *,
                   epochs: int, lr: float, batch_size: int = 32, seed: int = 13,
                   class_weights: torch.Tensor | None = None) -> dict[str, Any]:
    """Train `kind` ("text" or "image"), keep the best dev Macro-F1 in `out` (state dict)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = build(kind)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    best, history = -1.0, []
    rows = list(train)
    for epoch in range(epochs):
        model.train()
        rng.shuffle(rows)
        t0 = time.perf_counter()
        for b in range(0, len(rows), batch_size):
            chunk = rows[b : b + batch_size]
            inputs = batcher(chunk)[0]
            labels = torch.tensor([label_index(e.label) for e in chunk])  # type: ignore[arg-type]
            loss = F.cross_entropy(model(inputs), labels, weight=class_weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        score = macro_f1(model, batcher, dev)
        history.append({"epoch": epoch + 1, "dev_macro_f1": score, "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{kind}-only epoch {epoch + 1}/{epochs}: dev Macro-F1 {score:.4f}", file=sys.stderr)
        if score > best:
            best = score
            out.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), out)
    return {"kind": kind, "best_dev_macro_f1": best, "history": history, "train_rows": len(rows)}


def load_unimodal(kind: str, path: Path) -> nn.Module:
    model = build(kind)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()
