"""The training loop the teacher and the student share: seeded, resumable, early stop on dev.

`EpochLoop` holds what differs between them (batches, loss, dev scores, what to save);
`run_epochs` is the loop itself. Checkpoints hold tensors and plain data only, and are loaded
with `weights_only=True`.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from crisislens.distill import data as D
from crisislens.runtime.labels import LABEL_NAMES

T = TypeVar("T")


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(labels: Sequence[str]) -> torch.Tensor:
    """Inverse square-root class frequency, mean 1: helps the small classes Macro-F1 counts."""
    counts = Counter(labels)
    w = torch.tensor([1.0 / max(counts.get(n, 1), 1) ** 0.5 for n in LABEL_NAMES])
    return w * len(w) / w.sum()


def length_batches(items: Sequence[T], length: Callable[[T], int], batch_size: int) -> list[list[T]]:
    """Batches of similar length (less padding): `items` in chunks of 50 batches, each chunk
    sorted by `length` and cut into batches; not shuffled."""
    chunk = batch_size * 50
    batches: list[list[T]] = []
    for c in range(0, len(items), chunk):
        part = sorted(items[c : c + chunk], key=length)
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    return batches


def make_optimizer(model: torch.nn.Module, text: torch.nn.Module, config: Any) -> torch.optim.AdamW:
    """AdamW with two groups: the fine-tuned MiniLM layers (`text`, lr_text) and everything else
    trainable (lr_new). `config` is a TrainConfig or a StudentTrainConfig."""
    text_params = [p for p in text.parameters() if p.requires_grad]
    text_ids = {id(p) for p in text_params}
    new_params = [p for p in model.parameters() if p.requires_grad and id(p) not in text_ids]
    # "initial_lr" travels with the optimizer's state dict: a resumed run schedules from the base
    # rates, not from the decayed rates the checkpoint was saved with.
    return torch.optim.AdamW(
        [{"params": text_params, "lr": config.lr_text, "initial_lr": config.lr_text},
         {"params": new_params, "lr": config.lr_new, "initial_lr": config.lr_new}],
        weight_decay=config.weight_decay,
    )


def new_state() -> dict[str, Any]:
    return {"epoch": 0, "best": -1.0, "bad_epochs": 0, "history": []}


def resume_from(last: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore model, optimizer and RNG from `last` (None when there is no checkpoint)."""
    if not last.is_file():
        return None
    ckpt = load_checkpoint(last)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["torch_rng"])
    print(f"resumed from {last} after epoch {ckpt['state']['epoch']}", file=sys.stderr)
    return ckpt["state"]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint of tensors and plain data, loaded without running any pickled code."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # a file from elsewhere, or one holding arbitrary objects
        raise ValueError(f"{path}: not a CrisisLens checkpoint that loads as weights only ({exc})") from None


def save_last(last: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "state": state,
                "torch_rng": torch.get_rng_state()}, last)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                   parts: dict[str, float], sums: Counter[str]) -> None:
    """One step (gradients clipped to norm 1); the loss parts go into the epoch's running `sums`."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    sums.update(parts)
    sums["n"] += 1


class WarmupLinear:
    """Per step: linear warm-up over the first fifth of an epoch, then linear decay to 5%."""

    def __init__(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int):
        self.optimizer = optimizer
        self.steps_per_epoch = steps_per_epoch
        self.total = steps_per_epoch * epochs
        self.warmup = max(1, steps_per_epoch // 5)
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in optimizer.param_groups]

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        return max(0.05, 1.0 - (step - self.warmup) / max(1, self.total - self.warmup))

    def set(self, epoch: int, step: int) -> None:
        f = self.factor(epoch * self.steps_per_epoch + step)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * f


@dataclass
class EpochLoop:
    """What differs between the teacher's and the student's training loops; `run_epochs` is the
    loop itself (epochs, early stop on dev Macro-F1, best/last checkpoints, time limit)."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: WarmupLinear
    last: Path  # resumable checkpoint, written after every epoch
    batches: Callable[[int], list[list[D.Example]]]  # epoch -> its batches
    step_loss: Callable[[list[D.Example]], tuple[torch.Tensor, dict[str, float]]]
    dev: Callable[[], dict[str, float]]  # scores on dev, "macro_f1" among them
    save_best: Callable[[int, dict[str, float]], None]  # (epoch number, dev scores)
    progress: Callable[[Counter[str]], str]  # the running loss parts, shown on the progress line
    describe: Callable[[dict[str, float]], str] = lambda s: f"dev Macro-F1 {s['macro_f1']:.4f}"
    progress_every: int = 10


def run_epochs(loop: EpochLoop, state: dict[str, Any], *, epochs: int, patience: int, batch_size: int,
               started: float, max_minutes: float | None = None) -> bool:
    """Train until `epochs`, `patience` epochs without a better dev Macro-F1, or `max_minutes`
    (then True: stopped by the time limit). `state` (`new_state`/`resume_from`) is updated in place."""
    while state["epoch"] < epochs and state["bad_epochs"] < patience:
        epoch = state["epoch"]
        loop.model.train()
        batches = loop.batches(epoch)
        t0 = time.perf_counter()
        sums: Counter[str] = Counter()
        for step, batch in enumerate(batches):
            loop.schedule.set(epoch, step)
            loss, parts = loop.step_loss(batch)
            optimizer_step(loop.model, loop.optimizer, loss, parts, sums)
            if step % loop.progress_every == 0 or step == len(batches) - 1:
                rate = (step + 1) * batch_size / (time.perf_counter() - t0)
                eta = (len(batches) - step - 1) * batch_size / max(rate, 1e-9)
                print(f"\repoch {epoch + 1}/{epochs} step {step + 1}/{len(batches)} {loop.progress(sums)} "
                      f"({rate:.0f} ex/s, ETA {eta / 60:.1f} min)", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        scores = loop.dev()
        state["epoch"] = epoch + 1
        state["history"].append({"epoch": epoch + 1, "seconds": round(time.perf_counter() - t0, 1),
                                 "train": {k: v / sums["n"] for k, v in sums.items() if k != "n"}, "dev": scores})
        improved = scores["macro_f1"] > state["best"]
        if improved:
            state["best"], state["bad_epochs"] = scores["macro_f1"], 0
            loop.save_best(epoch + 1, scores)
        else:
            state["bad_epochs"] += 1
        save_last(loop.last, loop.model, loop.optimizer, state)
        print(f"epoch {epoch + 1}: {loop.describe(scores)}{' *best*' if improved else ''}", file=sys.stderr)
        if max_minutes and (time.perf_counter() - started) / 60 > max_minutes:
            return True
    return False


def run_summary(config: Any, state: dict[str, Any], stopped_early: bool, started: float) -> dict[str, Any]:
    """The fields every train_summary.json has (the caller adds its data counts)."""
    return {"config": asdict(config), "history": state["history"], "best_dev_macro_f1": state["best"],
            "stopped_by_time_limit": stopped_early, "train_minutes": round((time.perf_counter() - started) / 60, 1)}


def mean_parts(sums: Counter[str], keys: Sequence[str]) -> str:
    """'name value ...' of the running means of the loss parts `keys` (for the progress line)."""
    return " ".join(f"{k} {sums[k] / sums['n']:.3f}" for k in keys)
