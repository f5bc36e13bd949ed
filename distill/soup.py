"""Weight interpolation of two students started from the same weights ("model soup",
Wortsman et al. 2022; WiSE-FT, Wortsman et al. 2022).

Two student v2 runs with the same seed start from identical weights (the pretrained MiniLM and
the same draw for the new fusion and heads); trained on different targets (e.g. the probe
teacher's reading of CrisisMMD, or HumAID's own labels), they land in one basin, so a weighted
mean of their weights is itself a working student whose behaviour lies between the two. The
mix weight is chosen on development sets (`research/studies/student_soup.py`), never on a set
it is reported on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from crisislens.distill.loop import load_checkpoint


def mixed_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], weight: float) -> dict[str, torch.Tensor]:
    """(1 - weight) * a + weight * b for every floating-point tensor; other tensors (counters)
    are taken from `a`. The two must hold the same names and shapes."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"mix weight {weight}: between 0 and 1")
    if a.keys() != b.keys():
        only_a, only_b = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
        raise ValueError(f"the two students differ in their weights (only in the first: {only_a[:5]}, "
                         f"only in the second: {only_b[:5]})")
    out: dict[str, torch.Tensor] = {}
    for name, ta in a.items():
        tb = b[name]
        if ta.shape != tb.shape:
            raise ValueError(f"{name}: shape {tuple(ta.shape)} in the first student, {tuple(tb.shape)} in the second")
        out[name] = torch.lerp(ta, tb.to(ta.dtype), weight) if ta.is_floating_point() else ta.clone()
    return out


def load_pair(first: Path, second: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two student checkpoints, refused unless they are the same student shape."""
    a, b = load_checkpoint(first), load_checkpoint(second)
    for key in ("config", "bert_config"):
        if a.get(key) != b.get(key):
            raise ValueError(f"{first} and {second}: different student {key.replace('_', ' ')}s; "
                             "only students of one shape mix")
    return a, b


def mixed_checkpoint(a: dict[str, Any], b: dict[str, Any], weight: float, first: Path, second: Path) -> dict[str, Any]:
    """A student checkpoint (as `save_student` writes) whose weights are those of `a` and `b`
    (`load_pair(first, second)`) mixed at `weight` (0: `a`, 1: `b`)."""
    try:
        state = mixed_state(a["model"], b["model"], weight)
    except ValueError as exc:
        raise ValueError(f"{first} and {second}: {exc}") from None
    return {"model": state, "config": a["config"], "bert_config": a["bert_config"], "trainer": "student_v2 soup",
            "soup": {"first": str(first), "second": str(second), "weight": weight,
                     "first_dev": a.get("dev"), "second_dev": b.get("dev")}}


def mix_checkpoints(first: Path, second: Path, weight: float) -> dict[str, Any]:
    """`first`'s and `second`'s weights mixed at `weight` (0: `first`, 1: `second`), as a checkpoint."""
    return mixed_checkpoint(*load_pair(first, second), weight, first, second)


def write_mix(first: Path, second: Path, weight: float, out: Path) -> Path:
    """`mix_checkpoints` saved to `out` (a folder: `<out>/best.pt`, the name `export onnx` takes)."""
    mixed = mix_checkpoints(first, second, weight)  # before the folder: a refused mix leaves nothing behind
    out.mkdir(parents=True, exist_ok=True)
    path = out / "best.pt"
    torch.save(mixed, path)
    return path


__all__ = ["load_pair", "mix_checkpoints", "mixed_checkpoint", "mixed_state", "write_mix"]
